"""Backends: the file type picks the runner, every runner gives the eager model's answers, one ONNX Runtime
session is shared across threads, and a corrupt or mismatched file is one clear error."""
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from digitrec.errors import DigitrecError
from digitrec.exporter import export, to_input
from digitrec.models import create_model
from digitrec.read import backends
from digitrec.read.backends import TorchBackend, load_backend, shared_session
from digitrec.read.recognizer import Recognizer
from digitrec.training.checkpoint import save_checkpoint

SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".torchscript"}


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist_dir):
    """A small random digitnet as a checkpoint and in each fp32 export format."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = create_model("digitnet-sep").eval()
    ckpt = save_checkpoint({"model": model.digitrec_spec, "model_state": model.state_dict(),
                            "card": {"architecture": "digitnet-sep"}}, folder / "m.pt")
    out = {"torch": ckpt}
    for fmt, suffix in SUFFIXES.items():
        out[fmt] = export(ckpt, format=fmt, out=folder / f"m{suffix}", data_dir=mnist_dir, parity_images=256)
    return out


@pytest.fixture(scope="module")
def images(mnist_dir):
    from digitrec.data.mnist import load_mnist

    return to_input(load_mnist(mnist_dir, log=lambda m: None)["test"].images[:64])


@pytest.mark.parametrize("fmt", list(SUFFIXES))
def test_the_file_type_picks_the_backend_and_it_agrees_with_eager(files, images, fmt):
    eager = load_backend(files["torch"])
    backend = load_backend(files[fmt])
    assert isinstance(eager, TorchBackend) and backend.name == fmt
    assert backend.card["architecture"] == "digitnet-sep"
    np.testing.assert_allclose(backend.logits(images), eager.logits(images), atol=1e-4)
    np.testing.assert_allclose(backend(images), eager(images), atol=1e-5)
    assert np.allclose(backend(images).sum(1), 1, atol=1e-5)


def test_an_explicit_backend_must_agree_with_the_file(files):
    assert load_backend(files["onnx"], "onnx").name == "onnx"
    with pytest.raises(DigitrecError, match="ONNX files cannot run on backend 'pt2'"):
        load_backend(files["onnx"], "pt2")
    with pytest.raises(DigitrecError, match="an ONNX file, but backend 'onnx-int8'"):
        load_backend(files["onnx"], "onnx-int8")
    with pytest.raises(DigitrecError, match="unknown backend 'onyx'; did you mean 'onnx'"):
        load_backend(files["onnx"], "onyx")


def test_a_checkpoint_with_a_named_backend_runs_its_export_made_once(files, images, tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("DIGITREC_EXPORTS", str(tmp_path))
    monkeypatch.setenv("DIGITREC_DATA", str(mnist_dir))
    first = load_backend(files["torch"], "torchscript")
    assert first.name == "torchscript" and first.path.is_relative_to(tmp_path)
    monkeypatch.setattr(backends, "export", lambda *a, **k: pytest.fail("exported twice"))
    again = load_backend(files["torch"], "torchscript")
    assert again.path == first.path
    np.testing.assert_allclose(again.logits(images), load_backend(files["torch"]).logits(images), atol=1e-4)


def test_one_onnx_session_per_file_shared_across_threads(files, images):
    a, b = load_backend(files["onnx"]), load_backend(files["onnx"])
    assert shared_session(files["onnx"]) is shared_session(files["onnx"])
    serial = [a(images[i : i + 8]) for i in range(0, 64, 8)]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda i: b(images[i : i + 8]), range(0, 64, 8)))
    for s, t in zip(serial, threaded):
        np.testing.assert_array_equal(s, t)


@pytest.mark.parametrize("suffix, message", [
    (".onnx", "not a readable ONNX model"),
    (".pt2", "not a readable torch.export (.pt2) program"),
    (".torchscript", "not a readable TorchScript file"),
    (".pt", "not a readable PyTorch checkpoint"),
])
def test_a_corrupt_file_is_one_clear_error(tmp_path, suffix, message):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DigitrecError, match=re.escape(message)) as info:
        load_backend(bad)
    assert str(bad) in str(info.value)


def test_a_file_of_the_wrong_kind_is_one_clear_error(files, tmp_path):
    renamed = tmp_path / "checkpoint.pt2"
    renamed.write_bytes(files["torch"].read_bytes())
    with pytest.raises(DigitrecError, match="not a torch.export"):
        load_backend(renamed)
    with pytest.raises(DigitrecError, match="unknown file type '.bin'"):
        (tmp_path / "m.bin").write_bytes(b"x")
        load_backend(tmp_path / "m.bin")


def test_an_onnx_model_of_the_wrong_shape_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 784])
    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "flat", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "flat.onnx"))
    with pytest.raises(DigitrecError, match=r"logits \[B, 10\]; it gives shape \[2, 784\]"):
        load_backend(tmp_path / "flat.onnx")


def test_the_recognizer_reads_the_same_whatever_the_backend(files, images):
    canvas = np.zeros((40, 100), np.float32)  # two MNIST digits side by side, white on black
    canvas[6:34, 10:38], canvas[6:34, 60:88] = images[0, 0], images[1, 0]
    eager = Recognizer.load(files["torch"], threshold=0).read(canvas)
    for fmt in SUFFIXES:
        other = Recognizer.load(files[fmt], threshold=0).read(canvas)
        assert [i.box for i in other.items] == [i.box for i in eager.items] and len(eager.items) == 2
        np.testing.assert_allclose([i.probs for i in other.items], [i.probs for i in eager.items], atol=1e-5)
