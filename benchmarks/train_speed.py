"""Time-to-accuracy of digitrec's recipes, and epoch speed against the tutorials' DataLoader program.

For each recipe it trains (as `digitrec train --recipe R` does), evaluates the test set after
every epoch (outside the timed training, and never used for any decision), and reports the
training seconds until test accuracy first reached 99.0% and 99.5%. With --compare-tutorial it
also times epochs of the tutorials' program and of `--recipe tutorial` in the same run.

    python benchmarks/train_speed.py                      # fast (5 seeds), default and tutorial recipes
    python benchmarks/train_speed.py --recipes fast:5     # RECIPE:SEEDS, comma-separated
    python benchmarks/train_speed.py --compare-tutorial   # adds the tutorial speed ratio
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tutorial_baseline import tutorial_epochs  # noqa: E402

from digitrec.config import build_config  # noqa: E402
from digitrec.data.mnist import load_splits  # noqa: E402
from digitrec.models.inference import batched_logits  # noqa: E402
from digitrec.training.loop import Hooks, resolve_device, train  # noqa: E402

TARGETS = (0.990, 0.995)


def time_to_accuracy(recipe: str, seed: int, device: str, overrides: dict) -> dict:
    """Train one recipe; return per-epoch (training seconds, test accuracy) and the times to each target."""
    test = load_splits(log=lambda m: None)["test"]
    dev = resolve_device(device)
    images, labels = test.images.to(dev), test.labels.to(dev)
    curve: list[tuple[float, float]] = []

    def on_epoch(record: dict, model: torch.nn.Module) -> None:
        acc = (batched_logits(model, images).argmax(1) == labels).float().mean().item()
        curve.append((record["train_time"], acc))

    with tempfile.TemporaryDirectory() as runs:
        cfg = build_config(recipe, {"runs_dir": runs, "name": "bench", "seed": seed, "device": device,
                                    "progress": False, "tensorboard": False, **overrides})
        train(cfg, log=lambda m: None, hooks=Hooks(on_epoch=on_epoch))
    reached = {f"time_to_{100 * t:.1f}": next((s for s, a in curve if a >= t), None) for t in TARGETS}
    return {"recipe": recipe, "seed": seed, "final_test_acc": curve[-1][1], "curve": curve, **reached}


def compare_tutorial(epochs: int, device: str) -> dict:
    """Seconds per epoch: the tutorials' DataLoader program vs `digitrec train --recipe tutorial`.

    Both run in this process on the main thread (two runs at once would share the cores), their
    epochs interleaved (one of theirs after each of ours), so that both see the same machine
    conditions; medians over `epochs` epochs of each are compared. The training passes are compared
    alone, and whole epochs too: each program's training pass plus the evaluation it runs after it
    (the tutorial's test pass over the 10,000 test images; digitrec's validation pass).
    """
    splits = load_splits(log=lambda m: None)
    train_split, test_split = splits["train"], splits["test"]
    theirs = tutorial_epochs(train_split.images, train_split.labels, test=(test_split.images, test_split.labels),
                             device=str(resolve_device(device)))
    base_train: list[float] = []
    base_eval: list[float] = []
    ours_train: list[float] = []
    ours_eval: list[float] = []

    def after_ours(record: dict, _model) -> None:
        ours_train.append(record["epoch_time"])
        ours_eval.append(record["val_time"])
        t, e = next(theirs)
        base_train.append(t)
        base_eval.append(e)

    with tempfile.TemporaryDirectory() as runs:
        cfg = build_config("tutorial", {"runs_dir": runs, "name": "tut", "epochs": epochs, "device": device,
                                        "progress": False, "tensorboard": False, "eval_test": False})
        train(cfg, log=lambda m: None, hooks=Hooks(on_epoch=after_ours))
    med = statistics.median
    b, o = med(base_train), med(ours_train)
    bw = med([t + e for t, e in zip(base_train, base_eval)])
    ow = med([t + e for t, e in zip(ours_train, ours_eval)])
    return {"tutorial_dataloader_s_per_epoch": b, "digitrec_tutorial_s_per_epoch": o, "speedup": b / o,
            "tutorial_whole_epoch_s": bw, "digitrec_whole_epoch_s": ow, "speedup_whole_epoch": bw / ow,
            "baseline_epochs": base_train, "baseline_test_passes": base_eval, "digitrec_epochs": ours_train,
            "digitrec_validation_passes": ours_eval, "train_images": len(train_split)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default="fast:5,default,tutorial",
                   help="comma-separated RECIPE[:SEEDS] to time (default: fast:5,default,tutorial; '' for none)")
    p.add_argument("--seeds", type=int, default=1, help="seeds for a recipe given without :SEEDS (default: 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compare-tutorial", action="store_true", help="also time the tutorials' DataLoader program")
    p.add_argument("--tutorial-epochs", type=int, default=5,
                   help="epochs timed on each side of the comparison (default: 5)")
    p.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = p.parse_args()

    results: dict = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "machine": platform.processor() or platform.machine(),
                     "date": time.strftime("%Y-%m-%d"), "recipes": {}}
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    for item in filter(None, args.recipes.split(",")):
        recipe, _, seeds = item.partition(":")
        runs = [time_to_accuracy(recipe, seed, args.device, {}) for seed in range(int(seeds or args.seeds))]
        results["recipes"][recipe] = {"runs": runs, **_summary(runs)}
        print(f"{recipe}: {json.dumps(_summary(runs))}", flush=True)
    if args.compare_tutorial:
        results["tutorial_comparison"] = compare_tutorial(args.tutorial_epochs, args.device)
    _print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def _summary(runs: list[dict]) -> dict:
    """Mean, spread and range of each figure over seeds, and the seed-averaged curve.

    `mean_curve` averages, epoch by epoch, the training seconds and the test accuracy over seeds;
    `mean_time_to_*` is the first point where that mean accuracy reaches the target.
    """
    n = min(len(r["curve"]) for r in runs)
    curve = [(statistics.fmean(r["curve"][i][0] for r in runs), statistics.fmean(r["curve"][i][1] for r in runs))
             for i in range(n)]
    out: dict = {"mean_curve": curve}
    for t in TARGETS:
        out[f"mean_time_to_{100 * t:.1f}"] = next((sec for sec, acc in curve if acc >= t), None)
    for key in ("final_test_acc", *[f"time_to_{100 * t:.1f}" for t in TARGETS]):
        vals = [r[key] for r in runs if r[key] is not None]
        out[key] = {"mean": statistics.fmean(vals) if vals else None,
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "median": statistics.median(vals) if vals else None, "min": min(vals, default=None),
                    "max": max(vals, default=None), "reached": f"{len(vals)}/{len(runs)}"}
    return out


def _fmt(stat: dict, scale: float = 1.0, unit: str = "s") -> str:
    """mean ± standard deviation [min-max] (runs that reached it / runs)."""
    if stat["mean"] is None:
        return f"not reached ({stat['reached']})"
    spread = (f" ± {stat['std'] * scale:.2f} [{stat['min'] * scale:.2f}-{stat['max'] * scale:.2f}]"
              if stat["min"] != stat["max"] else "")
    return f"{stat['mean'] * scale:.2f}{unit}{spread} ({stat['reached']})"


def _print_table(results: dict) -> None:
    print(f"\ndevice {results['device']} ({results.get('gpu', results['machine'])}), torch {results['torch']}, "
          f"{results['threads']} threads")
    print(f"{'recipe':<10} {'final test acc':<36} {'time to 99.0%':<36} {'time to 99.5%':<36}")
    for name, r in results["recipes"].items():
        print(f"{name:<10} {_fmt(r['final_test_acc'], 100, '%'):<36} {_fmt(r['time_to_99.0']):<36} "
              f"{_fmt(r['time_to_99.5']):<36}")
    print("\nseed-averaged test accuracy first reaching the target (training seconds):")
    for name, r in results["recipes"].items():
        got = ", ".join(f"{t}: {r[f'mean_time_to_{t}'] and round(r[f'mean_time_to_{t}'], 1)}" for t in ("99.0", "99.5"))
        curve = " ".join(f"{sec:.1f}s/{100 * acc:.2f}%" for sec, acc in r["mean_curve"])
        print(f"{name:<10} {got}   curve: {curve}")
    if "tutorial_comparison" in results:
        c = results["tutorial_comparison"]
        print(f"\nLeNet-5 tutorial recipe, seconds per training pass (median): tutorials' DataLoader program "
              f"{c['tutorial_dataloader_s_per_epoch']:.2f}s, digitrec {c['digitrec_tutorial_s_per_epoch']:.2f}s: "
              f"{c['speedup']:.2f}x faster")
        print(f"whole epochs with each program's evaluation pass (median): {c['tutorial_whole_epoch_s']:.2f}s vs "
              f"{c['digitrec_whole_epoch_s']:.2f}s: {c['speedup_whole_epoch']:.2f}x faster")


if __name__ == "__main__":
    main()
