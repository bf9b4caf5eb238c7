"""Training throughput of one process against N data-parallel processes (torchrun) on this machine.

Each row trains one epoch of `--recipe fast` as `digitrec train` does (N > 1 through `--nproc N`),
alternating the process counts round by round so that drifts in machine load hit every row alike,
and reads the global images/s that rank 0 logged in the checkpoint.

    python benchmarks/ddp_scaling.py                     # 1 vs 2 processes, 3 rounds
    python benchmarks/ddp_scaling.py --nproc 1,2,4 --rounds 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from digitrec.training.checkpoint import load_checkpoint


def one_epoch(nproc: int, subset: int, recipe: str) -> float:
    """Images per second (all processes together) of one training epoch run through the CLI."""
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "digitrec", "train", "--recipe", recipe, "--epochs", "1", "--runs-dir", runs,
               "--name", "scaling", "--train-subset", str(subset), "--no-progress", "--no-tensorboard",
               "--no-eval-test", "--device", "cpu"]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        return load_checkpoint(Path(runs) / "scaling" / "last.pt")["train_state"]["history"][-1]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", default="1,2", help="comma-separated process counts (default: 1,2)")
    p.add_argument("--rounds", type=int, default=3, help="epochs timed per process count (default: 3)")
    p.add_argument("--train-subset", type=int, default=20_000, help="images per timed epoch (default: 20000)")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--out", default="benchmarks/results/ddp_scaling.json")
    args = p.parse_args()

    counts = [int(n) for n in args.nproc.split(",")]
    speeds: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            speeds[n].append(one_epoch(n, args.train_subset, args.recipe))
    base = statistics.median(speeds[counts[0]])
    rows = [{"processes": n, "images_per_s_median": statistics.median(v), "images_per_s": v,
             "vs_first": statistics.median(v) / base} for n, v in speeds.items()]
    print(f"\n{os.cpu_count()} CPUs, torch {torch.__version__}, recipe {args.recipe}, "
          f"{args.train_subset} images per epoch, {args.rounds} rounds (medians)")
    print(f"{'processes':>9} {'images/s':>10} {'vs ' + str(counts[0]):>8}   runs")
    for r in rows:
        runs = " ".join(f"{v:.0f}" for v in r["images_per_s"])
        print(f"{r['processes']:>9} {r['images_per_s_median']:>10.0f} {r['vs_first']:>7.2f}x   {runs}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "torch": torch.__version__,
                               "recipe": args.recipe, "train_subset": args.train_subset, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
