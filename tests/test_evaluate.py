import json

import pytest
import torch
from PIL import Image

from digitrec.config import build_config
from digitrec.errors import DigitrecError
from digitrec.evaluation import evaluate_checkpoint
from digitrec.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from digitrec.training.loop import train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist_dir):
    """A LeNet trained briefly (2 epochs on 4,096 images): good enough to be well above chance."""
    root = tmp_path_factory.mktemp("runs")
    cfg = build_config("tutorial", dict(
        runs_dir=str(root), name="lenet", data_dir=str(mnist_dir), train_subset=4096, val_size=1000, epochs=2,
        lr=3e-3, progress=False, tensorboard=False, compile=False,
    ))
    train(cfg, log=lambda m: None)
    return root / "lenet"


def test_eval_writes_metrics_and_pictures_beside_the_checkpoint(trained_run, tmp_path):
    out = tmp_path / "report"
    m = evaluate_checkpoint(trained_run / "best.pt", split="test", out_dir=out, log=lambda s: None)
    assert m["n"] == 10_000 and 0.9 < m["accuracy"] <= 1.0
    assert m["model"] == "lenet5" and m["images_per_s"] > 0
    assert len(m["per_class"]) == 10 and sum(r["support"] for r in m["per_class"]) == 10_000
    cm = torch.tensor(m["confusion_matrix"])
    assert cm.sum() == 10_000 and cm.trace().item() == round(m["accuracy"] * 10_000)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy"] == m["accuracy"]
    for name in ("confusion_matrix.png", "curves.png", "errors.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 200


def test_eval_on_validation_uses_the_runs_own_split(trained_run, tmp_path):
    m = evaluate_checkpoint(trained_run / "best.pt", split="val", out_dir=tmp_path, pictures=False, log=lambda s: None)
    ckpt = load_checkpoint(trained_run / "best.pt")
    assert m["n"] == 1000
    assert m["accuracy"] == pytest.approx(ckpt["train_state"]["best_val_acc"], abs=1e-6)
    assert (tmp_path / "metrics-val.json").exists()


def test_a_non_checkpoint_file_gets_one_clear_error(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("hello")
    with pytest.raises(DigitrecError, match="not a readable PyTorch checkpoint"):
        evaluate_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(DigitrecError, match="not a digitrec checkpoint"):
        evaluate_checkpoint(plain)
    with pytest.raises(DigitrecError, match="no such file"):
        evaluate_checkpoint(tmp_path / "missing.pt")


def test_a_truncated_checkpoint_is_reported_as_corrupt(trained_run, tmp_path):
    data = (trained_run / "best.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DigitrecError, match="not a readable PyTorch checkpoint"):
        evaluate_checkpoint(cut)


def test_weights_of_another_model_are_refused(trained_run, tmp_path):
    ckpt = load_checkpoint(trained_run / "best.pt")
    ckpt["model"] = {"name": "cnn5", "args": {}}
    forged = save_checkpoint({k: v for k, v in ckpt.items() if k not in ("format", "version")}, tmp_path / "x.pt")
    with pytest.raises(DigitrecError, match="do not fit model 'cnn5'"):
        evaluate_checkpoint(forged)


def test_checkpoint_rebuilds_the_same_model(trained_run, mnist_dir):
    model = model_from_checkpoint(load_checkpoint(trained_run / "best.pt"))
    x = torch.rand(5, 1, 28, 28)
    again = model_from_checkpoint(load_checkpoint(trained_run / "best.pt"))
    assert torch.equal(model(x), again(x))
