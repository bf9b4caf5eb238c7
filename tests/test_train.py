from pathlib import Path

import pytest
import torch

from digitrec.config import build_config, load_yaml
from digitrec.errors import DigitrecError
from digitrec.training.checkpoint import load_checkpoint
from digitrec.training.loop import Hooks, train


def small(tmp_path: Path, mnist_dir: Path, **over):
    """A run small enough for a test: 2,048 training images, 500 for validation."""
    settings = dict(
        runs_dir=str(tmp_path), name="run", data_dir=str(mnist_dir), model="lenet5", train_subset=2048,
        val_size=500, batch_size=64, epochs=3, optimizer="adam", lr=2e-3, schedule="cosine", progress=False,
        tensorboard=False, augment={"enabled": False},
    )
    settings.update(over)
    return build_config("default", settings)


def quiet(_msg: str) -> None:
    pass


def test_a_short_run_learns(tmp_path, mnist_dir):
    out = train(small(tmp_path, mnist_dir, epochs=2), log=quiet)
    h = out["history"]
    assert h[1]["train_loss"] < h[0]["train_loss"] < 2.3
    assert out["best_val_acc"] > 0.75


def test_default_model_learns_with_augmentation(tmp_path, mnist_dir):
    cfg = small(tmp_path, mnist_dir, model="digitnet", optimizer="adam", lr=1e-2, schedule="onecycle", epochs=2,
                augment={"enabled": True, "elastic": 1.0, "thickness_p": 0.2, "erase_p": 0.1})
    out = train(cfg, log=quiet)
    assert out["history"][-1]["train_loss"] < out["history"][0]["train_loss"]
    assert out["best_val_acc"] > 0.5  # 0.74 measured; chance is 0.1


def test_same_seed_gives_the_same_numbers(tmp_path, mnist_dir):
    a = train(small(tmp_path / "a", mnist_dir, epochs=1), log=quiet)
    b = train(small(tmp_path / "b", mnist_dir, epochs=1), log=quiet)
    c = train(small(tmp_path / "c", mnist_dir, epochs=1, seed=1), log=quiet)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]


class Killed(Exception):
    pass


@pytest.mark.parametrize("extras", [{}, {"ema": 0.99, "model": "digitnet", "optimizer": "sgd", "lr": 0.05,
                                         "augment": {"enabled": True, "elastic": 1.0}}])
def test_resume_after_a_kill_in_epoch_three_matches_an_uninterrupted_run(tmp_path, mnist_dir, extras):
    full = train(small(tmp_path / "full", mnist_dir, epochs=4, **extras), log=quiet)

    def die_in_epoch_three(epoch: int, step: int) -> None:
        if epoch == 3 and step == 2 * 32 + 5:
            raise Killed

    cfg = small(tmp_path / "cut", mnist_dir, epochs=4, **extras)
    with pytest.raises(Killed):
        train(cfg, log=quiet, hooks=Hooks(on_step=die_in_epoch_three))
    assert load_checkpoint(tmp_path / "cut" / "run" / "last.pt")["train_state"]["epoch"] == 2
    resumed = train(cfg, resume=tmp_path / "cut" / "run" / "last.pt", log=quiet)

    assert resumed["history"] == full["history"][:4] or _same_metrics(resumed["history"], full["history"])
    a = load_checkpoint(tmp_path / "full" / "run" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "run" / "last.pt")
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key


def _same_metrics(h1, h2):
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
    return [[r[k] for k in keys] for r in h1] == [[r[k] for k in keys] for r in h2]


def test_run_folder_holds_config_checkpoints_and_tensorboard(tmp_path, mnist_dir):
    cfg = small(tmp_path, mnist_dir, epochs=2, save_every=1, tensorboard=True)
    train(cfg, log=quiet)
    run = tmp_path / "run"
    assert load_yaml(run / "config.yaml")["model"] == "lenet5"
    for name in ("last.pt", "best.pt", "epoch001.pt", "epoch002.pt"):
        ckpt = torch.load(run / name, weights_only=True)
        assert ckpt["format"] == "digitrec-checkpoint"
        assert not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["model_state"])
        assert ckpt["card"]["input"]["shape"] == [1, 28, 28]
        assert ckpt["card"]["data_sha256"]["train-images-idx3-ubyte"].startswith("ba8910")
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(run.glob(".*.tmp"))


def test_early_stopping_uses_validation_patience(tmp_path, mnist_dir):
    cfg = small(tmp_path, mnist_dir, epochs=6, lr=1e-12, schedule="constant", patience=2)
    out = train(cfg, log=quiet)
    assert out["epochs"] == 3  # epoch 1 sets the best, epochs 2 and 3 do not improve on it


@pytest.mark.parametrize(
    "over",
    [
        {"optimizer": "sgd", "lr": 0.1, "schedule": "step", "model": "digitnet"},
        {"optimizer": "adamw", "schedule": "plateau"},
        {"optimizer": "radam", "lr": 1e-2, "schedule": "onecycle", "grad_clip": 1.0, "model": "digitnet"},
        {"accumulate": 2, "ema": 0.9},
        {"amp": "bf16"},
    ],
)
def test_every_optimizer_schedule_and_option_trains(tmp_path, mnist_dir, over):
    out = train(small(tmp_path, mnist_dir, epochs=3, **over), log=quiet)
    assert out["history"][-1]["train_loss"] < out["history"][0]["train_loss"]
    assert out["best_val_acc"] > 0.3  # the slowest case (RAdam's own warm-up) measured 0.49; chance is 0.1


def test_amp_on_cpu_is_a_stated_no_op(tmp_path, mnist_dir):
    lines = []
    train(small(tmp_path, mnist_dir, epochs=1, train_subset=256, amp="fp16"), log=lines.append)
    assert any("amp=fp16 has no effect on cpu" in line for line in lines)


def test_an_existing_run_is_not_overwritten_by_accident_and_overwrite_replaces_all_of_it(tmp_path, mnist_dir):
    train(small(tmp_path, mnist_dir, epochs=2, train_subset=256, save_every=1, tensorboard=True), log=quiet)
    cfg = small(tmp_path, mnist_dir, epochs=1, train_subset=256, tensorboard=True)
    with pytest.raises(DigitrecError, match="already holds a run"):
        train(cfg, log=quiet)
    train(cfg, overwrite=True, log=quiet)
    run = tmp_path / "run"
    assert not list(run.glob("epoch*.pt")) and len(list((run / "tensorboard").glob("events.out.*"))) == 1


def test_resuming_with_another_models_checkpoint_is_refused(tmp_path, mnist_dir):
    train(small(tmp_path, mnist_dir, epochs=1, train_subset=256), log=quiet)
    other = small(tmp_path, mnist_dir, name="other", model="cnn5", epochs=2, train_subset=256)
    with pytest.raises(DigitrecError, match="is for model 'lenet5'"):
        train(other, resume=tmp_path / "run" / "last.pt", log=quiet)


def test_resuming_with_another_batch_size_or_schedule_is_refused(tmp_path, mnist_dir):
    train(small(tmp_path, mnist_dir, epochs=1, train_subset=256), log=quiet)
    last = tmp_path / "run" / "last.pt"
    for change in ({"batch_size": 32}, {"schedule": "constant"}):
        with pytest.raises(DigitrecError, match=f"trained with {next(iter(change))}=.*--init"):
            train(small(tmp_path, mnist_dir, epochs=2, train_subset=256, **change), resume=last, log=quiet)


def test_init_starts_from_a_checkpoints_weights(tmp_path, mnist_dir):
    first = train(small(tmp_path, mnist_dir, epochs=2), log=quiet)
    tuned = train(small(tmp_path, mnist_dir, name="tuned", epochs=1, lr=1e-4, init=first["best_checkpoint"]),
                  log=quiet)
    fresh = train(small(tmp_path, mnist_dir, name="fresh", epochs=1, lr=1e-4), log=quiet)
    # At a rate too low to learn much in one epoch, only weights carried over explain a trained model.
    assert tuned["best_val_acc"] >= first["best_val_acc"] - 0.02
    assert fresh["best_val_acc"] < first["best_val_acc"] - 0.2


def test_init_from_another_model_or_a_bad_name_is_refused(tmp_path, mnist_dir):
    first = train(small(tmp_path, mnist_dir, epochs=1, train_subset=256), log=quiet)
    with pytest.raises(DigitrecError, match="is for model 'lenet5'.*pass --model"):
        train(small(tmp_path, mnist_dir, name="b", model="cnn5", init=first["best_checkpoint"]), log=quiet)
    with pytest.raises(DigitrecError, match="neither a checkpoint file nor a shipped model name"):
        train(small(tmp_path, mnist_dir, name="c", init="no-such-model"), log=quiet)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # a failed start writes nothing


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path, mnist_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DigitrecError, match="CUDA is not available"):
        train(small(tmp_path, mnist_dir, device="cuda"), log=quiet)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains(tmp_path, mnist_dir, amp):
    """Mixed precision learns as float32 does: the same run in both, on the GPU (lenet5, 2 epochs: 0.8+ in fp32)."""
    mixed = train(small(tmp_path, mnist_dir, device="cuda", amp=amp, epochs=2, name=amp), log=quiet)
    full = train(small(tmp_path, mnist_dir, device="cuda", amp="off", epochs=2, name="fp32"), log=quiet)
    assert full["best_val_acc"] > 0.75
    assert mixed["best_val_acc"] > full["best_val_acc"] - 0.05
    assert mixed["history"][1]["train_loss"] < mixed["history"][0]["train_loss"]
