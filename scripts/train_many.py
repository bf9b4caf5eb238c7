"""Train several configs at once on one machine (one GPU shared by several processes) within a time budget.

Made for a lent GPU and a short lease: each job of a plan is a `digitrec train` run in its own process; all
of them start together, time a short calibration run under the same load, and then train for as many
epochs as fit before the deadline (at most the plan's `epochs`), so every one-cycle schedule ends in time.

    python scripts/train_many.py PLAN.yaml --runs-dir runs/many --budget 480 [--gate FILE] [--font-cache FILE]
    python scripts/train_many.py PLAN.yaml --render-fonts FILE      # pre-render the plan's font digits here

A plan is YAML: `defaults:` (settings every job shares) and `jobs:` (a mapping of run name to its own
settings), each merged over the `default` recipe as `digitrec train --config` would. `--gate FILE` makes the
jobs wait until FILE exists before they touch the device (so a benchmark can have it alone first).

Font digits are rendered from font files on the CPU when training starts. A machine without the fonts can
train on digits rendered elsewhere: `--render-fonts` writes, for every job, the digits `digitrec train`
would render for its settings, and `--font-cache` hands them to the jobs in place of rendering. The runs'
configs still name the fonts, so each run repeats exactly with `digitrec train --config` where they exist.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from digitrec.config import TrainConfig, build_config
from digitrec.data.fonts import render_font_digits, resolve_fonts
from digitrec.data.mnist import Split
from digitrec.errors import DigitrecError
from digitrec.evaluation import evaluate_checkpoint
from digitrec.report import write_json
from digitrec.training import loop
from digitrec.training.loop import Hooks, train

CALIBRATION_STEPS = 60  # optimizer steps per calibration epoch (two epochs: the second is timed)
END_MARGIN_S = 30.0  # left after the last epoch for the test evaluation and the report
SAFETY = 1.15  # calibration under-counts what a long run meets (checkpoints, a slower neighbour)
PEER_WAIT_S = 60.0  # how long a calibrated job waits for the others before it times itself under their load


def load_plan(path: Path) -> dict[str, TrainConfig]:
    """Each job's resolved config, by run name."""
    if not path.is_file():
        raise SystemExit(f"plan {path}: no such file")
    plan = yaml.safe_load(path.read_text()) or {}
    jobs = plan.get("jobs") if isinstance(plan, dict) else None
    if not isinstance(jobs, dict) or not jobs:
        raise SystemExit(f"plan {path}: expected a mapping with `jobs:` (run name: its settings) and optional `defaults:`")
    defaults = plan.get("defaults") or {}
    try:
        return {name: build_config("default", defaults, {"name": name, **(own or {})}, source=f"{path} job {name}")
                for name, own in jobs.items()}
    except DigitrecError as e:
        raise SystemExit(str(e)) from None


def font_key(cfg: TrainConfig) -> str:
    """What a job's font digits depend on: the fonts, the renderings per digit, the seed and the sketch share."""
    return json.dumps([sorted(cfg.fonts), cfg.font_variants, cfg.seed, cfg.font_sketch])


def render_fonts(jobs: dict[str, TrainConfig], out: Path) -> None:
    """Render the font digits of every job that uses them, once per distinct key, into one file."""
    cache: dict[str, dict[str, torch.Tensor]] = {}
    for cfg in jobs.values():
        key = font_key(cfg)
        if cfg.font_digits and key not in cache:
            split = render_font_digits(resolve_fonts(cfg.fonts), cfg.font_variants, seed=cfg.seed,
                                       sketch=cfg.font_sketch)
            cache[key] = {"images": split.images, "labels": split.labels}
            print(f"rendered {len(split):,} font digits for seed {cfg.seed}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(cache, buffer)
    out.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=6))  # the digits compress about fivefold
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {len(cache)} renderings)")


def use_font_cache(path: Path) -> None:
    """Serve the jobs' font digits from a --render-fonts file instead of rendering them from font files."""
    cache = torch.load(io.BytesIO(gzip.decompress(path.read_bytes())), weights_only=True)

    def cached(cfg: TrainConfig, device: torch.device, log: Callable[[str], None]) -> Split | None:
        if not cfg.font_digits:
            return None
        entry = cache.get(font_key(cfg))
        if entry is None:
            raise SystemExit(f"{path} holds no font digits for {font_key(cfg)}; render them with --render-fonts")
        log(f"font digits: {len(entry['labels']):,} images from {path}; {cfg.font_digits:g} of each batch")
        return Split(entry["images"], entry["labels"]).to(device)

    loop._font_digits = cached


def calibrate(cfg: TrainConfig) -> dict[str, float]:
    """Seconds per full epoch (training pass, validation pass, checkpoint) measured on a short run now."""
    steps = len_train(cfg) // cfg.batch_size
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = build_config("default", {**cfg.to_dict(), "runs_dir": tmp, "name": "calibrate", "epochs": 2,
                                         "train_subset": CALIBRATION_STEPS * cfg.batch_size, "eval_test": False,
                                         "tensorboard": False, "progress": False, "warmup_epochs": 0.0})
        t0 = time.perf_counter()
        train(probe, log=lambda m: None, hooks=Hooks(on_epoch=lambda r, _m: records.append(r)))
        wall = time.perf_counter() - t0
    last = records[-1]
    epoch = last["epoch_time"] * steps / CALIBRATION_STEPS + last["val_time"] + 0.2
    return {"epoch_s": epoch, "calibration_wall_s": wall, "step_ms": 1000 * last["epoch_time"] / CALIBRATION_STEPS}


def len_train(cfg: TrainConfig) -> int:
    """Images in the training split (MNIST's 60,000 less the validation split, or the subset)."""
    return cfg.train_subset or 60_000 - cfg.val_size


def run_job(cfg: TrainConfig, deadline: float, gate: Path | None, out: Path, peers: list[str]) -> None:
    """One job: wait for the gate, calibrate, train the epochs that fit, write NAME.json beside the run.

    It calibrates twice: the first run loads and warms up while other jobs may still be starting; the second,
    once every peer has warmed up too (or a minute has passed), meets the load the training will meet. A job
    timed on a half-idle GPU once planned 80 epochs where 50 fitted.
    """
    _wait_for(lambda: gate is None or gate.exists(), math.inf)
    if time.time() > deadline - END_MARGIN_S:
        raise SystemExit("the deadline passed before the job could start")
    calibrate(cfg)
    (out / f"{cfg.name}.ready").touch()
    _wait_for(lambda: all((out / f"{name}.ready").exists() for name in peers), PEER_WAIT_S)
    cal = calibrate(cfg)
    fit = math.floor((deadline - time.time() - END_MARGIN_S) / (SAFETY * cal["epoch_s"]))
    epochs = min(cfg.epochs, fit)
    if epochs < 1:
        raise SystemExit(f"no epoch fits before the deadline (one takes about {cal['epoch_s']:.1f} s)")
    cfg.epochs = epochs
    if cfg.warmup_epochs >= epochs:
        cfg.warmup_epochs = 0.0
    print(f"calibrated: {json.dumps(cal)}; training {epochs} epochs", flush=True)
    t0 = time.perf_counter()
    summary = train(cfg, overwrite=True, log=lambda m: print(m, flush=True))
    summary.pop("model")
    test = evaluate_checkpoint(summary["best_checkpoint"], split="test", data_dir=cfg.data_dir or None,
                               device=cfg.device, log=lambda m: print(m, flush=True)) if cfg.eval_test else {}
    result = {"name": cfg.name, "model": cfg.model, "model_args": cfg.model_args, "epochs": epochs,
              "calibration": cal, "wall_s": time.perf_counter() - t0, "test_acc": test.get("accuracy"),
              **{k: summary[k] for k in ("best_val_acc", "best_epoch", "train_time")}}
    write_json(result, out / f"{cfg.name}.json")  # atomic: run_all reads it even after a kill


def _wait_for(ready, timeout: float) -> None:
    """Poll `ready()` twice a second until it holds or `timeout` seconds have passed."""
    end = time.time() + timeout
    while not ready() and time.time() < end:
        time.sleep(0.5)


def run_all(plan: Path, jobs: dict[str, TrainConfig], args: argparse.Namespace, deadline: float) -> int:
    """Start every job as its own process, stop any still running at the deadline, summarise them all."""
    runs = Path(args.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    for stale in runs.glob("*.ready"):  # from an earlier plan in this folder
        stale.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    procs = {}
    for name in jobs:
        cmd = [sys.executable, __file__, str(plan), "--job", name, "--runs-dir", str(runs),
               "--deadline", str(deadline)]
        if args.gate:
            cmd += ["--gate", args.gate]
        if args.font_cache:
            cmd += ["--font-cache", args.font_cache]
        with open(runs / f"{name}.log", "w") as log_file:
            procs[name] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(1.0)
    for name, p in procs.items():
        if p.poll() is None:
            p.kill()
            p.wait()
            print(f"{name}: still running at the deadline; stopped (its run folder keeps the last epoch's checkpoints)",
                  flush=True)
    rows = []
    for name in jobs:
        path = runs / f"{name}.json"
        rows.append(json.loads(path.read_text()) if path.exists() else {"name": name, "failed": procs[name].returncode})
    write_json(rows, runs / "summary.json")
    print(f"{'job':<16} {'model':<11} {'epochs':>6} {'s/epoch':>8} {'best val':>9} {'test':>7}")
    for r in rows:
        if "failed" in r:
            print(f"{r['name']:<16} failed (exit {r['failed']}); see {runs / (r['name'] + '.log')}")
            continue
        test = f"{100 * r['test_acc']:.2f}%" if r["test_acc"] is not None else "-"
        print(f"{r['name']:<16} {r['model']:<11} {r['epochs']:>6} {r['calibration']['epoch_s']:>8.1f} "
              f"{100 * r['best_val_acc']:>8.2f}% {test:>7}")
    return 0 if all("failed" not in r for r in rows) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plan", type=Path)
    p.add_argument("--runs-dir", default="runs/many")
    p.add_argument("--budget", type=float, default=600.0, help="seconds from now until every job must be done")
    p.add_argument("--gate", help="the jobs wait until this file exists before they start")
    p.add_argument("--font-cache", help="font digits written by --render-fonts, used instead of the font files")
    p.add_argument("--render-fonts", help="render every job's font digits into this file and exit")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per job (default: 2)")
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    jobs = load_plan(args.plan)
    if args.render_fonts:
        render_fonts(jobs, Path(args.render_fonts))
        return 0
    for cfg in jobs.values():
        cfg.runs_dir = args.runs_dir
    if args.job:
        if args.font_cache:
            use_font_cache(Path(args.font_cache))
        run_job(jobs[args.job], args.deadline, Path(args.gate) if args.gate else None, Path(args.runs_dir), list(jobs))
        return 0
    return run_all(args.plan, jobs, args, time.time() + args.budget)


if __name__ == "__main__":
    sys.exit(main())
