"""Data-parallel training under torchrun on CPU (gloo): two ranks agree, and match one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from digitrec.config import build_config
from digitrec.errors import DigitrecError
from digitrec.training.checkpoint import load_checkpoint
from digitrec.training.loop import train

# Runs the library's train() as any user script would, then saves this rank's final weights.
WORKER = """
import json, os, sys, torch
from digitrec.config import build_config
from digitrec.training.loop import train
out, settings = sys.argv[1], json.loads(sys.argv[2])
summary = train(build_config("default", settings), log=lambda m: None)
torch.save(summary["model"].state_dict(), os.path.join(out, f"rank{os.environ.get('RANK', '0')}.pt"))
print(json.dumps({"train_loss": summary["history"][-1]["train_loss"], "val_acc": summary["best_val_acc"]}))
"""


def settings(out: Path, mnist_dir: Path, **over) -> dict:
    """Adam on LeNet (no dropout, no BatchNorm), no augmentation: DDP's averaged gradient is the global batch's."""
    s = dict(runs_dir=str(out), name="run", data_dir=str(mnist_dir), model="lenet5", train_subset=2048, val_size=256,
             batch_size=64, epochs=2, optimizer="adam", lr=2e-3, schedule="cosine", label_smoothing=0.0,
             weight_decay=5e-4, progress=False, tensorboard=False, eval_test=False, channels_last=False,
             augment={"enabled": False})
    s.update(over)
    return s


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_ranks_end_identical_and_equal_to_one_process_on_the_same_global_batch(tmp_path, mnist_dir):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    single.mkdir()
    two = torchrun(2, str(script), str(ddp), json.dumps(settings(ddp, mnist_dir)))
    one = subprocess.run([sys.executable, str(script), str(single), json.dumps(settings(single, mnist_dir))],
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    r0, r1 = torch.load(ddp / "rank0.pt", weights_only=True), torch.load(ddp / "rank1.pt", weights_only=True)
    ref = torch.load(single / "rank0.pt", weights_only=True)
    for key in ref:
        assert torch.equal(r0[key], r1[key]), f"ranks differ in {key}"
        torch.testing.assert_close(r0[key], ref[key], rtol=1e-4, atol=1e-5, msg=f"DDP differs from one process in {key}")
    # Metrics are reduced across ranks: both report the whole epoch's loss, equal to one process's.
    reports = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    solo = json.loads(one.stdout.splitlines()[-1])
    assert len(reports) == 2 and reports[0] == reports[1]
    assert reports[0]["train_loss"] == pytest.approx(solo["train_loss"], rel=1e-4)
    assert reports[0]["val_acc"] == solo["val_acc"] > 0.5
    # Only rank 0 wrote the run folder, once.
    files = sorted(p.name for p in (ddp / "run").iterdir())
    assert files == ["best.pt", "config.yaml", "last.pt"]


def test_cli_nproc_trains_and_any_world_size_resumes(tmp_path, mnist_dir):
    flags = ["--runs-dir", str(tmp_path), "--name", "run", "--data-dir", str(mnist_dir), "--model", "lenet5",
             "--train-subset", "2048", "--val-size", "256", "--batch-size", "64", "--epochs", "2", "--no-augment",
             "--no-progress", "--no-tensorboard", "--no-eval-test", "--optimizer", "adam", "--lr", "2e-3"]
    cli = [sys.executable, "-m", "digitrec", "train"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    two = subprocess.run([*cli, "--nproc", "2", *flags, "--epochs", "1"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("training lenet5") == 1  # rank 1 is silent
    assert "2 processes (cpu)" in two.stdout
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["epoch"] == 1

    more = subprocess.run([*cli, *flags, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert more.returncode == 0, more.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    assert state["epoch"] == 2 and state["step"] == 2 * (2048 // 64)
    assert state["history"][1]["val_acc"] > 0.5


def test_a_global_batch_that_does_not_split_evenly_is_refused(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DigitrecError, match="batch_size 64 is the global batch and must divide evenly among 3"):
        train(build_config("default", settings(tmp_path, mnist_dir)), log=lambda m: None)
