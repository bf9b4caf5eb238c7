"""`digitrec bench`: a row per backend and batch size with throughput, latency and accuracy, as a table and JSON."""
import json

import pytest
import torch

from digitrec.bench import bench, format_table
from digitrec.errors import DigitrecError
from digitrec.exporter import export
from digitrec.models import create_model
from digitrec.training.checkpoint import save_checkpoint

SMALL = dict(repeats=2, images_per_round=16, test_images=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("digitnet-sep").eval()
    folder = tmp_path_factory.mktemp("bench")
    return save_checkpoint({"model": model.digitrec_spec, "model_state": model.state_dict(), "card": {}},
                           folder / "m.pt")


def test_bench_times_each_backend_at_each_batch_and_writes_json(ckpt, tmp_path, mnist_dir):
    out = tmp_path / "res" / "bench.json"
    result = bench(ckpt, ["torch", "onnx"], [1, 8], data_dir=mnist_dir, out=out, **SMALL)
    rows = {(r["backend"], r["batch"]): r for r in result["rows"]}
    assert sorted(rows) == [("onnx", 1), ("onnx", 8), ("torch", 1), ("torch", 8)]
    for r in rows.values():
        assert r["images_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] and len(r["rounds"]) == 2
        assert r["calls"] == 2 * max(1, 16 // r["batch"])
    assert rows["onnx", 8]["agreement_with_torch"] == 1.0 and rows["onnx", 8]["max_logit_diff_vs_torch"] < 1e-4
    assert rows["onnx", 1]["accuracy"] == rows["torch", 1]["accuracy"]
    ratio = rows["onnx", 8]["images_per_s"] / rows["torch", 8]["images_per_s"]
    assert result["speedup_vs_torch"]["8"]["onnx"] == pytest.approx(ratio, rel=1e-3)
    assert json.loads(out.read_text())["rows"] == result["rows"]
    table = format_table(result).splitlines()
    assert len(table) == 2 + 4 and table[1].split()[:3] == ["backend", "batch", "images/s"]


def test_bench_of_an_exported_file_times_that_file(ckpt, tmp_path, mnist_dir):
    path = export(ckpt, format="pt2", out=tmp_path / "m.pt2", data_dir=mnist_dir, parity_images=256)
    result = bench(path, None, [4], data_dir=mnist_dir, **SMALL)
    assert [(r["backend"], r["batch"]) for r in result["rows"]] == [("pt2", 4)]
    assert result["rows"][0]["file_bytes"] == path.stat().st_size
    with pytest.raises(DigitrecError, match="cannot run on backend 'onnx'"):
        bench(path, ["onnx"], [4], data_dir=mnist_dir, **SMALL)


@pytest.mark.parametrize("kwargs, message", [
    ({"backends": ["tensorrt"]}, "unknown backend"),
    ({"batches": [0]}, "must be positive"),
    ({"batches": [301]}, "larger than the 300 test images"),
])
def test_bench_rejects_bad_settings(ckpt, mnist_dir, kwargs, message):
    settings = {"backends": ["torch"], "batches": [1], **SMALL, **kwargs}
    with pytest.raises(DigitrecError, match=message):
        bench(ckpt, data_dir=mnist_dir, **settings)


def test_cli_bench_prints_a_table_and_writes_json(ckpt, tmp_path, mnist_dir, capsys):
    from digitrec.cli import main

    out = tmp_path / "b.json"
    code = main(["bench", "--model", str(ckpt), "--backend", "torch", "--batch", "2,4", "--repeats", "1",
                 "--images-per-round", "8", "--test-images", "300", "--out", str(out), "--data-dir", str(mnist_dir)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "torch" in printed and "images/s" in printed
    assert [r["batch"] for r in json.loads(out.read_text())["rows"]] == [2, 4]
    assert main(["bench", "--model", str(ckpt), "--batch", "1,x"]) == 2
