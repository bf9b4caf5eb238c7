"""`digitrec predict` as a user runs it: files, folders and globs, JSON lines, error lines, exit status, --explain."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_cli import digitrec

READ = Path(__file__).parent / "data" / "read"


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder with three readable images ('233', '5', '6'), a blank page and a file that is not an image."""
    for name in ("touching_233.jpg", "box_5.jpg", "tight_6.png"):
        shutil.copy(READ / name, tmp_path / name)
    Image.new("L", (120, 80), 255).save(tmp_path / "blank.png")
    (tmp_path / "notes.png").write_text("not an image")
    return tmp_path


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_lines_for_a_folder_a_glob_and_a_missing_file_with_the_exit_status(inputs: Path) -> None:
    proc = digitrec("predict", inputs, inputs / "*_5.jpg", inputs / "missing.png", "--json")
    assert proc.returncode == 1, proc.stderr  # two inputs failed, the others were still read
    assert "Traceback" not in proc.stderr
    lines = json_lines(proc.stdout)
    paths = [Path(line["path"]).name for line in lines]
    assert paths == ["blank.png", "box_5.jpg", "notes.png", "tight_6.png", "touching_233.jpg", "box_5.jpg",
                     "missing.png"]
    by_name = dict(zip(paths, lines))
    assert set(by_name["notes.png"]) == {"path", "error"} and "not an image" in by_name["notes.png"]["error"]
    assert set(by_name["missing.png"]) == {"path", "error"} and "no such file" in by_name["missing.png"]["error"]
    assert by_name["blank.png"]["digits"] == "" and by_name["blank.png"]["reason"]
    assert [by_name[n]["digits"] for n in ("box_5.jpg", "tight_6.png", "touching_233.jpg")] == ["5", "6", "233"]
    line = by_name["touching_233.jpg"]
    assert len(line["items"]) == 3 and line["confidence"] == pytest.approx(min(i["confidence"] for i in line["items"]))
    xs = []
    for item in line["items"]:
        assert set(item) == {"digit", "confidence", "box", "probs"}
        assert len(item["box"]) == 4 and all(isinstance(v, int) and v >= 0 for v in item["box"])
        assert len(item["probs"]) == 10 and sum(item["probs"]) == pytest.approx(1, abs=1e-3)
        assert item["digit"] == int(np.argmax(item["probs"]))
        xs.append(item["box"][0])
    assert xs == sorted(xs)  # left to right


def test_all_inputs_read_exit_zero_and_plain_output_is_one_line_each(inputs: Path) -> None:
    proc = digitrec("predict", inputs / "box_5.jpg", inputs / "blank.png")
    assert proc.returncode == 0, proc.stderr
    five, blank = proc.stdout.splitlines()
    assert five.startswith(f"{inputs / 'box_5.jpg'}: 5  confidence 0.")
    assert blank.startswith(f"{inputs / 'blank.png'}: - (blank")


def test_single_reads_exactly_one_digit_and_threshold_abstains_with_a_reason(inputs: Path) -> None:
    single = json_lines(digitrec("predict", inputs / "touching_233.jpg", "--single", "--json").stdout)[0]
    assert len(single["items"]) == 1
    abstained = json_lines(digitrec("predict", inputs / "box_5.jpg", "--threshold", 0.999, "--json").stdout)[0]
    assert abstained["digits"] == "" and "low confidence" in abstained["reason"]
    assert [i["digit"] for i in abstained["items"]] == [5]  # the guess is kept beside the abstention


def test_explain_writes_a_picture_beside_each_input_blank_pages_too(inputs: Path) -> None:
    proc = digitrec("predict", inputs / "touching_233.jpg", inputs / "blank.png", "--explain")
    assert proc.returncode == 0, proc.stderr
    picture = np.asarray(Image.open(inputs / "touching_233.explain.png").convert("RGB")).astype(int)
    source = Image.open(inputs / "touching_233.jpg")
    assert picture.shape[1] >= 3 * 112 and picture.shape[0] == source.height + 112 + 48
    boxes = (picture[: source.height, :, 1] > 120) & (picture[: source.height, :, 0] < 60)  # green box outlines
    assert boxes.sum() > 100
    strip = picture[source.height: source.height + 112, : 3 * 112, 0]
    assert all((strip[:, i * 112: (i + 1) * 112] > 128).sum() > 200 for i in range(3))  # three crops shown
    blank = Image.open(inputs / "blank.explain.png")
    assert blank.size == (320, 80 + 112 + 48)


def test_an_unwritable_explanation_is_an_error_line_and_the_run_goes_on(inputs: Path) -> None:
    (inputs / "box_5.explain.png").mkdir()  # a folder where the picture should go: no user may replace it
    proc = digitrec("predict", inputs / "box_5.jpg", inputs / "tight_6.png", "--explain", "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    failed, read = json_lines(proc.stdout)
    assert "box_5.explain.png: cannot write the explanation picture" in failed["error"] and read["digits"] == "6"
    assert sorted(p.name for p in inputs.glob(".*")) == []  # no temporary file left behind


def test_a_second_run_skips_its_own_explanations_and_an_empty_folder_is_an_error_line(inputs: Path) -> None:
    (inputs / "notes.png").unlink()
    assert digitrec("predict", inputs, "--explain").returncode == 0
    again = json_lines(digitrec("predict", inputs, inputs / "*.png", "--json").stdout)
    assert not [line["path"] for line in again if line["path"].endswith(".explain.png")]
    (inputs / "empty").mkdir()
    proc = digitrec("predict", inputs / "empty", inputs / "box_5.jpg", "--json")
    assert proc.returncode == 1
    empty, five = json_lines(proc.stdout)
    assert "a folder with no image files" in empty["error"] and five["digits"] == "5"


def test_rows_of_writing_read_as_one_json_line_with_a_newline_and_one_plain_line_with_a_space(tmp_path: Path) -> None:
    from PIL import ImageDraw

    page = Image.new("L", (400, 300), 255)
    draw = ImageDraw.Draw(page)
    for x, y in ((40, 20), (140, 20), (60, 160), (160, 160), (260, 165)):  # two "0"s over three
        draw.ellipse((x, y, x + 59, y + 99), outline=0, width=12)
    page.save(tmp_path / "rows.png")
    (line,) = json_lines(digitrec("predict", tmp_path / "rows.png", "--json", "--threshold", "0").stdout)
    assert [len(row) for row in line["digits"].split("\n")] == [2, 3] and len(line["items"]) == 5
    plain = digitrec("predict", tmp_path / "rows.png", "--threshold", "0").stdout
    assert plain.count("\n") == 1 and f"rows.png: {line['digits'].replace(chr(10), ' ')}  confidence" in plain
