"""Exports: parity with the source for every registered model, the ONNX contract, int8 size and accuracy,
the JSON sidecar, and clean failures."""
import json
import warnings

import numpy as np
import pytest
import torch

import digitrec
from digitrec.config import build_config
from digitrec.errors import DigitrecError
from digitrec.exporter import export, to_input
from digitrec.models import REGISTRY, create_model
from digitrec.read.backends import load_backend, torch_backend
from digitrec.training.checkpoint import save_checkpoint
from digitrec.training.loop import train

N = 300  # parity images per test: a few hundred, so batches 1, 2 and 256 are all checked


def randomised(name: str, seed: int = 0) -> torch.nn.Module:
    """A registered model with random weights and random BatchNorm statistics (so BN folding is exercised)."""
    torch.manual_seed(seed)
    model = create_model(name)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def save_random(path, name="digitnet-sep", seed=0):
    model = randomised(name, seed)
    card = {"architecture": name, "note": "test"}
    return save_checkpoint({"model": model.digitrec_spec, "model_state": model.state_dict(), "card": card}, path)


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    from digitrec.data.mnist import load_mnist

    split = load_mnist(mnist_dir, log=lambda m: None)["test"]
    return to_input(split.images[:N]), split.labels[:N].numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    """LeNet-5 trained briefly (2,048 images, 2 epochs, ~80%): accurate enough to measure what int8 loses."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = build_config("default", dict(
        runs_dir=str(runs), name="run", data_dir=str(mnist_dir), model="lenet5", train_subset=2048, val_size=500,
        batch_size=64, epochs=2, optimizer="adam", lr=3e-3, schedule="cosine", progress=False, tensorboard=False,
        augment={"enabled": False}, eval_test=False))
    return train(cfg, log=lambda m: None)["best_checkpoint"]


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("pt2", ".pt2"), ("torchscript", ".torchscript")])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_model_exports_with_parity(name, fmt, suffix, tmp_path, mnist_dir, test_images):
    model = randomised(name)
    images, _ = test_images
    with torch.inference_mode():
        ref = model(torch.from_numpy(images)).numpy()
    path = export(model, format=fmt, out=tmp_path / f"m{suffix}", data_dir=mnist_dir, parity_images=N)
    got = load_backend(path).logits(images)
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert np.abs(got - ref).max() <= 1e-4
    parity = json.loads((tmp_path / f"m{suffix}.json").read_text())["parity"]
    assert parity["images"] == N and parity["disagreements"] == 0 and parity["max_abs_logit_diff"] <= 1e-4


def test_onnx_has_named_io_a_dynamic_batch_the_card_and_passes_the_checker(tmp_path, mnist_dir):
    import onnx
    import onnxruntime as ort

    ckpt = save_random(tmp_path / "m.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export(ckpt, format="onnx", opset=18, data_dir=mnist_dir, parity_images=N)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]  # torch's LeafSpec notice is not ours
    assert path == tmp_path / "m.onnx"  # beside the checkpoint by default
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [18]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["digitrec.card"])["note"] == "test"
    assert json.loads(meta["digitrec.input"])["normalisation"]["applied"] == "inside the model"
    assert not any(node.metadata_props for node in proto.graph.node)  # no stack traces or local paths
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("image", "logits")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [1, 28, 28]
    for n in (1, 2, 256):
        assert session.run(None, {"image": np.random.rand(n, 1, 28, 28).astype(np.float32)})[0].shape == (n, 10)


def test_sidecar_says_source_format_opset_input_size_and_parity(tmp_path, mnist_dir):
    ckpt = save_random(tmp_path / "m.pt")
    path = export(ckpt, format="pt2", out=tmp_path / "out" / "model.pt2", data_dir=mnist_dir, parity_images=N)
    meta = json.loads((tmp_path / "out" / "model.pt2.json").read_text())
    assert meta["source"] == [str(ckpt)] and meta["format"] == "pt2" and meta["opset"] is None
    assert meta["size_bytes"] == path.stat().st_size
    assert meta["input"]["shape"] == ["batch", 1, 28, 28] and meta["input"]["normalisation"]["mean"] == 0.1307
    assert meta["parity"]["batches_checked"] == [1, 2, 256]
    assert meta["card"]["note"] == "test" and load_backend(path).card["note"] == "test"


def test_int8_of_the_default_architecture_is_at_most_a_third_of_fp32(tmp_path, mnist_dir):
    model = randomised("digitnet")
    fp32 = export(model, format="onnx", out=tmp_path / "m.onnx", data_dir=mnist_dir, parity_images=N)
    int8 = export(model, format="onnx-int8", out=tmp_path / "m.int8.onnx", data_dir=mnist_dir, parity_images=N,
                  max_drop=None, calibration_images=64)
    assert int8.stat().st_size <= fp32.stat().st_size / 3
    assert fp32.stat().st_size < 2 * 1024 * 1024
    meta = json.loads((tmp_path / "m.int8.onnx.json").read_text())
    assert meta["quantization"]["format"] == "QDQ" and meta["quantization"]["per_channel"]
    assert meta["size_bytes"] == int8.stat().st_size


def test_int8_keeps_the_accuracy_of_a_trained_model(tmp_path, mnist_dir, trained, test_images):
    path = export(trained, format="onnx-int8", out=tmp_path / "m.int8.onnx", data_dir=mnist_dir, parity_images=N,
                  max_drop=1.0, calibration_images=256)
    parity = json.loads((tmp_path / "m.int8.onnx.json").read_text())["parity"]
    assert parity["accuracy_source"] > 0.7  # the model learnt something, so the gate means something
    assert parity["accuracy_drop_points"] <= 1.0 and parity["agreement"] >= 0.98
    backend = load_backend(path)
    images, labels = test_images
    assert backend.name == "onnx-int8"
    assert (backend(images).argmax(1) == labels).mean() == pytest.approx(parity["accuracy_export"])


def test_int8_accuracy_gate_refuses_and_leaves_no_file(tmp_path, mnist_dir, trained):
    with pytest.raises(DigitrecError, match="loses .* accuracy points"):
        export(trained, format="onnx-int8", out=tmp_path / "m.int8.onnx", data_dir=mnist_dir, parity_images=N,
               max_drop=-1.0, calibration_images=64)
    assert list(tmp_path.iterdir()) == []


def test_ensemble_exports_as_one_network_averaging_probabilities(tmp_path, mnist_dir, test_images):
    paths = [save_random(tmp_path / f"e{i}.pt", seed=i) for i in range(2)]
    path = export(paths, format="onnx", out=tmp_path / "ens.onnx", data_dir=mnist_dir, parity_images=N)
    images, _ = test_images
    eager = torch_backend(paths, "ens")  # averages the members' probabilities
    np.testing.assert_allclose(load_backend(path)(images), eager(images), atol=1e-5)
    assert len(load_backend(path).card["ensemble"]) == 2


def test_unwritable_output_fails_cleanly_without_a_partial_file(tmp_path, mnist_dir):
    ckpt = save_random(tmp_path / "m.pt")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(DigitrecError, match="blocker is a file, not a folder"):
        export(ckpt, format="torchscript", out=tmp_path / "blocker" / "m.torchscript", data_dir=mnist_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "m.pt"]


def test_an_export_that_fails_its_check_leaves_nothing(tmp_path, mnist_dir, monkeypatch):
    import digitrec.exporter as ex

    monkeypatch.setattr(ex, "LOGIT_TOL", -1.0)  # no export can meet it
    ckpt = save_random(tmp_path / "m.pt")
    with pytest.raises(DigitrecError, match="does not match the source model"):
        export(ckpt, format="torchscript", data_dir=mnist_dir, parity_images=N)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "tflite"}, "unknown export format 'tflite'"),
    ({"format": "pt2", "opset": 17}, "--opset applies to the ONNX formats only"),
    ({"format": "onnx", "out": "m.pt2"}, "onnx files must end in .onnx"),
    ({"format": "onnx", "opset": 17}, "expected an ONNX opset from 18 to"),
    ({"format": "onnx-int8", "opset": 99}, "expected an ONNX opset from 18 to"),
])
def test_bad_requests_are_one_clear_error(tmp_path, kwargs, message):
    ckpt = save_random(tmp_path / "m.pt")
    with pytest.raises(DigitrecError, match=message):
        export(ckpt, **kwargs)


def test_a_corrupt_checkpoint_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DigitrecError, match="bad.pt: not a readable PyTorch checkpoint"):
        export(bad, format="onnx")


def test_digitrec_export_and_train_stay_functions_whatever_is_imported(tmp_path, mnist_dir):
    import digitrec.exporter  # noqa: F401
    import digitrec.training.loop  # noqa: F401

    assert digitrec.train is digitrec.training.loop.train
    ckpt = save_random(tmp_path / "m.pt")
    assert digitrec.export(ckpt, format="torchscript", data_dir=mnist_dir, parity_images=N).is_file()


def test_cli_export_prints_the_parity_and_fails_cleanly(tmp_path, mnist_dir, capsys):
    from digitrec.cli import main

    ckpt = save_random(tmp_path / "m.pt")
    assert main(["export", str(ckpt), "--format", "pt2", "--parity-images", str(N), "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "m.pt2: pt2" in out and f"parity on {N} test images: 0 different predictions" in out
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "onnx"]) == 2
    assert "missing.pt" in capsys.readouterr().err
