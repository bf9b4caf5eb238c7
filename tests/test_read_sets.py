"""benchmarks/read_sets.py: the evaluation sets are deterministic, labelled right, and written as described."""
from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from digitrec.data.idx import read_idx
from digitrec.data.mnist import load_splits
from digitrec.errors import DigitrecError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
N = 4


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


read_sets = _load_script("read_sets")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sets(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sets")
    read_sets.generate(out, n=N, seed=0, data_dir=mnist_dir, log=lambda _: None)
    return out


def test_same_seed_writes_same_bytes(sets: Path, mnist_dir: Path, tmp_path: Path) -> None:
    read_sets.generate(tmp_path, n=N, seed=0, data_dir=mnist_dir, log=lambda _: None)
    assert _files(tmp_path) == _files(sets)


def test_other_seed_writes_other_images(sets: Path, mnist_dir: Path, tmp_path: Path) -> None:
    read_sets.generate(tmp_path, n=N, seed=1, only=["scan"], data_dir=mnist_dir, log=lambda _: None)
    first = sorted((tmp_path / "scan").glob("00000.*"))[0].read_bytes()
    assert first != sorted((sets / "scan").glob("00000.*"))[0].read_bytes()


def test_smaller_n_is_a_prefix(sets: Path, mnist_dir: Path, tmp_path: Path) -> None:
    read_sets.generate(tmp_path, n=2, seed=0, only=["lines", "canvas"], data_dir=mnist_dir, log=lambda _: None)
    for name in ("lines", "canvas"):
        small = json.loads((tmp_path / name / "labels.json").read_text())
        full = json.loads((sets / name / "labels.json").read_text())
        assert len(small) == 2 and small == {k: full[k] for k in small}
        assert all((tmp_path / name / k).read_bytes() == (sets / name / k).read_bytes() for k in small)


def test_labels_list_exactly_the_images(sets: Path) -> None:
    for name in read_sets.SETS:
        folder = sets / name
        if name == "fonts" and not folder.exists():
            continue  # no handwriting fonts installed here
        labels = json.loads((folder / "labels.json").read_text())
        images = {p.name for p in folder.iterdir()} - {"labels.json", "meta.json"}
        assert set(labels) == images and len(labels) == N
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["count"] == N and set(meta["items"]) == images
        for fname in labels:
            with Image.open(folder / fname) as im:
                assert im.format == {"png": "PNG", "jpg": "JPEG"}[fname.rsplit(".", 1)[1]]


def test_labels_match_the_mnist_test_digits(sets: Path, mnist_dir: Path) -> None:
    truth = read_idx(mnist_dir / "t10k-labels-idx1-ubyte").numpy()
    for name in ("scan", "canvas", "cropped", "forms"):
        labels = json.loads((sets / name / "labels.json").read_text())
        items = json.loads((sets / name / "meta.json").read_text())["items"]
        assert {f: str(truth[items[f]["mnist_index"]]) for f in labels} == labels
    lines = json.loads((sets / "lines" / "labels.json").read_text())
    items = json.loads((sets / "lines" / "meta.json").read_text())["items"]
    for fname, digits in lines.items():
        assert digits == "".join(str(truth[i]) for i in items[fname]["mnist_indices"])
        assert 3 <= len(digits) <= 10 and fname.endswith(".jpg")


def test_canvas_is_rgba_280_with_black_strokes_in_alpha(sets: Path) -> None:
    for path in sorted((sets / "canvas").glob("*.png")):
        rgba = np.asarray(Image.open(path))
        assert rgba.shape == (280, 280, 4)
        assert rgba[..., :3].max() == 0 and rgba[..., 3].max() == 255 and (rgba[..., 3] == 0).mean() > 0.5


def test_scan_and_reject_look_as_described(sets: Path) -> None:
    for path in sorted((sets / "scan").iterdir()):
        if path.suffix in (".png", ".jpg"):
            gray = np.asarray(Image.open(path).convert("L"), np.float32)
            assert np.median(gray) > 150 and gray.min() < 110  # light paper, dark ink
    assert set(json.loads((sets / "reject" / "labels.json").read_text()).values()) == {""}
    fonts = sets / "fonts" / "labels.json"
    if fonts.exists():
        assert list(json.loads(fonts.read_text()).values()) == [str(d) for d in range(N)]


def test_cropped_digits_sit_their_margins_from_the_edge(sets: Path, mnist_dir: Path) -> None:
    items = json.loads((sets / "cropped" / "meta.json").read_text())["items"]
    for fname, item in items.items():
        gray = np.asarray(Image.open(sets / "cropped" / fname).convert("L"), np.float32)
        ink = gray < 0.5 * (float(np.median(gray)) + gray.min())
        ys, xs = np.nonzero(ink)
        top, bottom, left, right = item["margins"]
        assert all(0 <= m <= 4 for m in item["margins"])
        assert abs(ys.min() - top) <= 2 and abs(gray.shape[0] - 1 - ys.max() - bottom) <= 2
        assert abs(xs.min() - left) <= 2 and abs(gray.shape[1] - 1 - xs.max() - right) <= 2


def test_a_fonts_set_can_be_built_from_other_fonts(mnist_dir: Path, tmp_path: Path) -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not dejavu.is_file():
        pytest.skip("needs the DejaVu fonts (Debian fonts-dejavu-core)")
    read_sets.generate(tmp_path, n=20, only=["fonts"], data_dir=mnist_dir, fonts=[str(dejavu)], log=lambda _: None)
    meta = json.loads((tmp_path / "fonts" / "meta.json").read_text())
    assert meta["fonts"] == [{"package": "dejavu", "file": str(dejavu)}]
    assert {item["font"] for item in meta["items"].values()} == {"DejaVuSans.ttf"}
    assert sorted(json.loads((tmp_path / "fonts" / "labels.json").read_text()).values()) == sorted("0123456789" * 2)
    with pytest.raises(DigitrecError, match="no such font file"):
        read_sets.generate(tmp_path, n=2, only=["fonts"], data_dir=mnist_dir, fonts=["/no/font.ttf"])


def test_unknown_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError, match="unknown set"):
        read_sets.generate(tmp_path, n=1, only=["scans"])


def test_thin_leaves_a_one_pixel_line_inside_a_bar() -> None:
    bar = np.zeros((20, 40), bool)
    bar[7:13, 5:35] = True
    skeleton = read_sets.thin(bar)
    assert skeleton.sum() >= 20 and skeleton.sum(0).max() == 1  # one pixel thick across the bar
    assert skeleton[:7].sum() == 0 and skeleton[13:].sum() == 0


def _record(truth: str, got: str, file: str = "") -> dict:
    return {"file": file, "truth": truth, "got": got, "guess": got, "confidence": 0.9}


def test_quality_scores_lines_and_rejects_as_the_issue_counts() -> None:
    read_quality = _load_script("read_quality")
    assert read_quality.edit_distance("12345", "1245") == 1 and read_quality.edit_distance("", "12") == 2
    lines = read_quality.score("lines", [_record("123", "123"), _record("4567", "457"), _record("89", "")], {})
    assert lines["string_accuracy"] == pytest.approx(1 / 3) and lines["abstain_rate"] == pytest.approx(1 / 3)
    assert lines["digit_accuracy"] == pytest.approx(1 - 3 / 9) and not lines["passed"]
    assert dict(lines["confusions"]) == {"length 4→3": 1, "abstain (no ink)": 1}
    items = {"a": {"kind": "noise"}, "b": {"kind": "letter", "letter": "X"}}
    reject = read_quality.score("reject", [_record("", "", "a"), _record("", "8", "b")], items)
    assert reject["false_accepts_blank_noise"] == 0 and reject["false_accepts_letters"] == 1 and reject["passed"]


def test_the_lines_set_draws_what_it_drew_when_its_figures_were_measured(mnist_dir: Path, tmp_path: Path) -> None:
    # what the random draws decide (digits, height, slope, paper, JPEG quality), not the encoder's bytes: a change
    # to make_line that moves its draws would silently change the evaluation set every figure was measured on
    read_sets.generate(tmp_path, n=3, seed=0, only=["lines"], data_dir=mnist_dir, log=lambda _: None)
    meta = json.loads((tmp_path / "lines" / "meta.json").read_text())["items"]
    drawn = [(m["mnist_indices"], m["height"], m["skew"], m["ruled"], m["quality"], m["tone"]) for m in meta.values()]
    assert drawn == [([8949, 9546, 8604, 6974, 3213, 5806, 3168], 43, 1.58, True, 87, 235.963),
                     ([326, 5367, 8058, 5375, 1457, 4673, 6120, 5197, 142, 4566], 33, 0.0, True, 88, 223.387),
                     ([9314, 1075, 1564, 5620, 8940, 3072, 4377], 64, -1.55, False, 76, 242.648)]


def test_numbers_in_rows_are_labelled_top_to_bottom_and_drawn_apart(mnist_dir: Path) -> None:
    images, labels = read_sets.load_test_digits(mnist_dir)
    ctx = read_sets.Context(images, labels, 0, [], [])
    sample = read_sets.make_line(ctx, 0, np.random.default_rng(5), read_sets.LineRecipe(rows=3))
    rows = sample.label.split("\n")
    assert len(rows) == 3 and all(3 <= len(r) <= 10 and r.isdigit() for r in rows)
    assert "".join(rows) == "".join(str(labels[j]) for j in sample.meta["mnist_indices"])
    ink = np.asarray(Image.open(io.BytesIO(read_sets.encode(sample))).convert("L")) < 128
    inked_rows = np.flatnonzero(ink.any(1))
    assert (np.diff(inked_rows) > 5).sum() >= 2  # blank bands of paper between the three numbers


def test_a_recipe_sets_how_many_digits_a_number_has(mnist_dir: Path) -> None:
    images, labels = read_sets.load_test_digits(mnist_dir)
    ctx = read_sets.Context(images, labels, 0, [], [])
    for digits, lengths in (((1, 2), {1, 2}), ((1, 1), {1}), ((3, 10), set(range(3, 11)))):
        recipe = read_sets.LineRecipe(digits=digits, drift=0.5)  # a climbing baseline too: one digit has no slope
        seen = {len(read_sets.make_line(ctx, i, np.random.default_rng(i), recipe).label) for i in range(40)}
        assert seen <= lengths and len(seen) >= min(len(lengths), 2)


def _variants_written(script: Any, only: list[str], tmp_path: Path, mnist_dir: Path) -> dict[str, Any]:
    """A robustness benchmark's `main` run on 3 images of each of `only`: the variants its JSON holds."""
    out = tmp_path / "robustness.json"
    assert script.main(["--n", "3", "--only", *only, "--json", str(out), "--data-dir", str(mnist_dir)]) == 0
    variants = json.loads(out.read_text())["variants"]
    assert set(variants) == set(only)
    return variants


def test_line_robustness_reads_each_variant_and_writes_json(mnist_dir: Path, tmp_path: Path) -> None:
    robustness = _load_script("line_robustness")
    assert robustness.VARIANTS["base"] == read_sets.LineRecipe()  # the evaluation set's own recipe
    variants = _variants_written(robustness, ["base", "slope6"], tmp_path, mnist_dir)
    for figures in variants.values():
        assert figures["n"] == 3 and figures["reader"] * 3 in (0, 1, 2, 3) and 0 <= figures["segmentation_alone"] <= 1
    assert variants["slope6"]["style"]["skew"] == 6.0 and variants["slope6"]["style"]["skew_p"] == 1.0


def test_line_robustness_tiles_are_mnist_boxes_side_by_side(mnist_dir: Path, tmp_path: Path) -> None:
    robustness = _load_script("line_robustness")
    images, labels = read_sets.load_test_digits(mnist_dir)
    ctx = read_sets.Context(images, labels, 9001, [], [])
    sample = robustness.make_tiles(ctx, 0, np.random.default_rng(3))
    idx, scale = sample.meta["mnist_indices"], sample.meta["scale"]
    assert 3 <= len(idx) <= 10 and 1.0 <= scale <= 4.0 and sample.fmt == "jpg"
    assert sample.label == "".join(str(labels[j]) for j in idx)
    width, height = sample.image.size  # the meta's scale is rounded to 0.01
    assert abs(width - 28 * len(idx) * scale) <= 1 and abs(height - 28 * scale) <= 1
    small = np.asarray(sample.image.resize((28 * len(idx), 28), Image.Resampling.BOX), np.float32)
    truth = 255.0 - np.hstack([images[j] for j in idx])
    assert np.abs(small - truth).mean() < 12  # dark digits on white, in the order of the label
    variants = _variants_written(robustness, ["tiles"], tmp_path, mnist_dir)
    assert variants["tiles"]["style"] == "make_tiles" and variants["tiles"]["n"] == 3


def test_mnist_files_reads_mnist_digits_as_files_both_ways_and_writes_json(mnist_dir: Path, tmp_path: Path) -> None:
    script = _load_script("mnist_files")
    images, _ = read_sets.load_test_digits(mnist_dir)
    decoded = np.asarray(Image.open(io.BytesIO(script.png(images[0]))))
    assert np.array_equal(decoded, images[0])  # the file holds the digit exactly, white on black as MNIST stores it
    out = tmp_path / "mnist_files.json"
    assert script.main(["--n", "20", "--json", str(out), "--data-dir", str(mnist_dir)]) == 0
    figures = json.loads(out.read_text())
    assert figures["n"] == 20 and figures["digits"] == "test" and figures["classify"] >= 0.95
    for key in ("white_on_black single", "white_on_black number", "dark_on_white single", "dark_on_white number"):
        r = figures[key]
        assert r["accuracy"] >= 0.9 and r["accuracy"] == 1 - len(r["wrong"]) / 20
        assert 0 <= r["read_as_two_or_more"] + r["abstained"] <= len(r["wrong"])


def test_line_robustness_on_validation_digits_uses_the_held_out_training_digits(mnist_dir: Path) -> None:
    robustness = _load_script("line_robustness")
    images, labels = robustness.validation_digits(mnist_dir)
    val = load_splits(mnist_dir, val_size=5000, split_seed=0)["val"]
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, val.images.reshape(-1, 28, 28).numpy()) and np.array_equal(labels, val.labels.numpy())
    test_images, _ = read_sets.load_test_digits(mnist_dir)
    assert not np.array_equal(images[:100], test_images[:100])
    figures = robustness.run(2, ["base"], 9001, mnist_dir, digits="val", lines="default")["base"]
    assert figures["n"] == 2 and 0 <= figures["reader"] <= 1


def test_canvas_robustness_draws_each_variant_as_described_and_writes_json(mnist_dir: Path, tmp_path: Path) -> None:
    robustness = _load_script("canvas_robustness")
    images, labels = read_sets.load_test_digits(mnist_dir)
    ctx = read_sets.Context(images, labels, 9001, [], [])
    for name, (lo, hi) in (("plain", (84, 280)), ("small", (28, 84))):
        data, label = robustness.VARIANTS[name](ctx, 0, np.random.default_rng(1))
        image = Image.open(io.BytesIO(data))
        alpha = np.asarray(image)[..., 3]
        ys, xs = np.nonzero(alpha)
        assert image.mode == "RGBA" and image.size == (280, 280) and not np.asarray(image)[..., :3].any()
        assert label in "0123456789" and lo // 2 <= ys.max() - ys.min() < hi and xs.max() - xs.min() < hi
    variants = _variants_written(robustness, ["set", "plain"], tmp_path, mnist_dir)
    for figures in variants.values():
        assert figures["n"] == 3 and figures["no_gate"] * 3 in (0, 1, 2, 3) and figures["right_ones_gate_turned_away"] <= 3
