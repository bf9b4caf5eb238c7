"""The `digitrec` command as a user runs it: real subprocesses, exit codes, stdout and stderr."""
import json
import os
import shutil
import subprocess
import sys

import pytest


def digitrec(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "digitrec", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


def assert_clean_error(proc, *fragments):
    """Exit status 2, one 'digitrec: error:' line on stderr, and no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("digitrec: error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


OFFLINE = {"DIGITREC_MIRRORS": "http://127.0.0.1:9/", "DIGITREC_NO_NPM": "1"}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, mnist_dir):
    """One tiny run through the CLI, reused by the tests below (the tutorial recipe, torch.compile included)."""
    runs = tmp_path_factory.mktemp("cli_runs")
    proc = digitrec("train", "--recipe", "tutorial", "--train-subset", 2048, "--val-size", 500, "--epochs", 1,
                    "--lr", 3e-3, "--runs-dir", runs, "--name", "cli", "--data-dir", mnist_dir, "--no-tensorboard")
    assert proc.returncode == 0, proc.stderr
    return runs, proc


def test_train_prints_progress_and_the_test_accuracy(cli_run):
    runs, proc = cli_run
    assert "epoch 1/1" in proc.stdout and "test accuracy" in proc.stdout
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.json", "confusion_matrix.png", "curves.png", "errors.png"):
        assert (runs / "cli" / name).exists(), name


def test_eval_json_prints_one_object(cli_run, tmp_path):
    runs, _ = cli_run
    proc = digitrec("eval", runs / "cli" / "best.pt", "--json", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["n"] == 10_000 and 0.5 < obj["accuracy"] <= 1


def test_resume_continues_a_cli_run(cli_run, tmp_path):
    runs, _ = cli_run
    shutil.copytree(runs / "cli", tmp_path / "cli")
    proc = digitrec("train", "--resume", tmp_path / "cli" / "last.pt", "--runs-dir", tmp_path, "--epochs", 2,
                    "--no-eval-test")
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in proc.stdout and "epoch 2/2" in proc.stdout and "epoch 1/2" not in proc.stdout


def test_models_lists_parameter_counts():
    proc = digitrec("models", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["lenet5"]["params"] == 61_706 and "digitnet" in rows


def test_data_info_reports_verified_files(mnist_dir):
    info = json.loads(digitrec("data", "info", "--json", "--data-dir", mnist_dir).stdout)
    assert set(info["files"].values()) == {"ok"}


def test_unknown_model_is_one_clear_error(tmp_path, mnist_dir):
    proc = digitrec("train", "--model", "lenet", "--runs-dir", tmp_path, "--data-dir", mnist_dir)
    assert_clean_error(proc, "unknown model 'lenet'", "did you mean 'lenet5'")


def test_bad_config_values_are_one_clear_error(tmp_path):
    assert_clean_error(digitrec("train", "--lr", "-1", "--runs-dir", tmp_path), "lr")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 2\nbatchsize: 64\n")
    assert_clean_error(digitrec("train", "--config", cfg, "--runs-dir", tmp_path), "batchsize", "batch_size")


def test_missing_data_says_how_to_place_the_files(tmp_path):
    proc = digitrec("data", "fetch", env={**OFFLINE, "DIGITREC_DATA": str(tmp_path / "empty")})
    assert_clean_error(proc, "train-images-idx3-ubyte", "DIGITREC_DATA")


def test_corrupt_data_is_detected_and_never_used(tmp_path, mnist_dir):
    data = tmp_path / "data"
    shutil.copytree(mnist_dir, data)
    labels = data / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    proc = digitrec("train", "--data-dir", data, "--runs-dir", tmp_path, "--epochs", 1, env=OFFLINE)
    assert_clean_error(proc, "t10k-labels-idx1-ubyte")
    assert "checksum mismatch" in proc.stdout + proc.stderr


def test_eval_of_a_non_checkpoint_is_one_clear_error(tmp_path):
    junk = tmp_path / "photo.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert_clean_error(digitrec("eval", junk), "photo.png", "not a readable PyTorch checkpoint")


def test_resuming_another_models_checkpoint_is_one_clear_error(cli_run, tmp_path):
    runs, _ = cli_run
    proc = digitrec("train", "--resume", runs / "cli" / "last.pt", "--model", "cnn5", "--runs-dir", tmp_path)
    assert_clean_error(proc, "is for model 'lenet5'")


def test_train_lines_writes_a_line_reader_predict_can_use(tmp_path, mnist_dir):
    proc = digitrec("train-lines", "--steps", 3, "--batch-size", 4, "--out", tmp_path, "--data-dir", mnist_dir)
    assert proc.returncode == 0, proc.stderr
    assert "line reader saved to" in proc.stdout
    assert (tmp_path / "lines.pt").is_file() and (tmp_path / "lines.onnx").is_file()
    line = tmp_path / "line.png"
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "read", "touching_233.jpg"), line)
    for reader in ("lines.pt", "lines.onnx"):
        proc = digitrec("predict", line, "--lines", tmp_path / reader, "--json", "--threshold", 0)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["digits"].isdigit()


def test_bad_train_lines_values_and_foreign_line_readers_are_one_clear_error(tmp_path, cli_run):
    assert_clean_error(digitrec("train-lines", "--steps", 0), "--steps")
    runs, _ = cli_run
    proc = digitrec("predict", os.path.join(os.path.dirname(__file__), "data", "read", "touching_233.jpg"),
                    "--lines", runs / "cli" / "best.pt")
    assert_clean_error(proc, "best.pt", "not a LineNet checkpoint")


WEIGHTS = os.path.join(os.path.dirname(__file__), os.pardir, "src", "digitrec", "weights")


@pytest.mark.parametrize("argv,fragments", [
    (["train", "--lr", "inf"], ["lr", "a finite number"]),
    (["train", "--weight-decay", "inf"], ["weight_decay", "a finite number"]),
    (["train", "--val-size", "0"], ["val_size", ">= 1"]),
    (["train", "--name", "../elsewhere"], ["name", "a plain folder name"]),
    (["train", "--runs-dir", "{file}"], ["runs_dir", "a folder, not a file"]),
    (["train", "--nproc", "2", "--lr", "-1"], ["lr", "a number > 0"]),  # checked once, before torchrun starts
    (["train", "--config", "{binary}"], ["not a text file"]),
    (["train", "--init", "{gate}", "--epochs", "1"], ["a letter gate checkpoint", "predict --gate"]),
    (["train-lines", "--out", "{file}"], ["--out", "is a file, not a folder"]),
    (["train-gate", "--lr", "inf"], ["--lr inf"]),
    (["eval", "{gate}"], ["a letter gate checkpoint", "not a digit classifier"]),
    (["eval", "{lines}"], ["a line reader checkpoint", "predict --lines"]),
    (["eval", "--model", "default", "--device", "foo"], ["--device 'foo'"]),
    (["eval", "--model", "default", "--out", "{file}"], ["--out", "is a file, not a folder"]),
    (["export", "default", "--format", "onnx", "--opset", "99"], ["--opset 99", "from 18 to"]),
    (["bench", "--model", "default", "--out", "{dir}"], ["--out", "a folder"]),
    (["bench", "--model", "default", "--test-images", "-1"], ["--test-images -1"]),
    (["serve", "--port", "70000"], ["--port 70000"]),
    (["predict", "{box5}", "--lines", "{classifier_onnx}"], ["not a LineNet export"]),
])
def test_bad_arguments_are_one_clear_error_before_any_work(argv, fragments, tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    names = {"file": tmp_path / "file", "dir": tmp_path / "dir", "binary": tmp_path / "binary.yaml",
             "gate": os.path.join(WEIGHTS, "gate.pt"), "lines": os.path.join(WEIGHTS, "lines.pt"),
             "classifier_onnx": os.path.join(WEIGHTS, "default.onnx"),
             "box5": os.path.join(os.path.dirname(__file__), "data", "read", "box_5.jpg")}
    proc = digitrec(*(a.format(**names) for a in argv), cwd=tmp_path)
    assert_clean_error(proc, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.yaml", "dir", "file"]  # nothing written
