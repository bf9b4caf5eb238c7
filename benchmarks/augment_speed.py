"""Images/s of digitrec's batched augmentation, whole and op by op, against kornia when it is installed.

Run: python benchmarks/augment_speed.py [--device cpu|cuda] [--repeats N] [--batches 128 512] [--threads N]
Prints a table and writes benchmarks/results/augment_speed.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from digitrec.data.augment import Augment, AugmentConfig

RESULTS = Path(__file__).resolve().parent / "results" / "augment_speed.json"
HEIGHT = WIDTH = 28

# The full pipeline: the config defaults plus every optional op switched on.
FULL = AugmentConfig(elastic=2.0, thickness_p=0.3, blur_p=0.2, erase_p=0.2)
OFF = AugmentConfig(rotate=0.0, scale=0.0, translate=0.0, shear=0.0, contrast=0.0)
ALONE = {
    "rotate": dict(rotate=FULL.rotate),
    "scale": dict(scale=FULL.scale),
    "translate": dict(translate=FULL.translate),
    "shear": dict(shear=FULL.shear),
    "elastic": dict(elastic=FULL.elastic, elastic_p=FULL.elastic_p),
    "thickness": dict(thickness_p=FULL.thickness_p),
    "blur": dict(blur_p=FULL.blur_p, blur_sigma=FULL.blur_sigma),
    "contrast": dict(contrast=FULL.contrast),
    "erase": dict(erase_p=FULL.erase_p),
    "pen": dict(pen_p=0.2),  # the shipped model's second stage (configs/shipped-pen.yaml); not in FULL
    "edge": dict(edge_p=0.3),
}
# Same work as the kornia pipeline below: affine + elastic + erasing.
KORNIA_MATCH = dataclasses.replace(FULL, contrast=0.0, thickness_p=0.0, blur_p=0.0)


def digits(batch: int, device: torch.device) -> torch.Tensor:
    """Synthetic MNIST-like batch: a thick ring of ink, so every op has strokes to work on."""
    ys, xs = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    r = ((ys - 13.5) ** 2 + (xs - 13.5) ** 2).sqrt()
    ring = ((r > 5) & (r < 9)).float()
    return ring.expand(batch, 1, HEIGHT, WIDTH).contiguous().to(device)


def sync(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock time covers the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Median images/s of each fn(x) over `repeats` rounds that time every fn once, after three warm-up calls each.

    Interleaving the entries means a burst of load from elsewhere on a shared machine hits all of them alike.
    """
    for fn in fns.values():
        for _ in range(3):
            fn(x)
    sync(x.device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            sync(x.device)
            times[name].append(time.perf_counter() - start)
    return {name: x.shape[0] / statistics.median(t) for name, t in times.items()}


def ours(cfg: AugmentConfig, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """digitrec's Augment with its own seeded generator on `device`."""
    aug, gen = Augment(cfg), torch.Generator(device).manual_seed(0)
    return lambda x: aug(x, gen)


def kornia_pipeline(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The kornia equivalent of KORNIA_MATCH, or None when kornia is not importable."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    sigma = FULL.elastic_sigma
    ksize = 2 * math.ceil(3 * sigma) + 1
    # kornia smooths U(-1, 1) noise with a normalised Gaussian, then scales by alpha in [-1, 1] units; pick alpha
    # so the field's typical peak (2.5 std) is FULL.elastic pixels. Speed does not depend on alpha.
    smoothed_std = math.sqrt(1.0 / 3.0) / (2.0 * math.sqrt(math.pi) * sigma)
    alpha = FULL.elastic * 2.0 / WIDTH / (2.5 * smoothed_std)
    pipeline = torch.nn.Sequential(
        K.RandomAffine(
            degrees=FULL.rotate, translate=(FULL.translate, FULL.translate),
            scale=(1 - FULL.scale, 1 + FULL.scale), shear=FULL.shear, p=1.0,
        ),
        K.RandomElasticTransform(
            kernel_size=(ksize, ksize), sigma=(sigma, sigma), alpha=(alpha, alpha), p=FULL.elastic_p,
        ),
        K.RandomErasing(scale=FULL.erase_area, ratio=(1 / 3, 3.0), value=0.0, p=FULL.erase_p),
    ).to(device)
    return pipeline


def main() -> None:
    """Time every configuration at every batch size, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (one call per entry each); medians")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]

    entries: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "full": ours(FULL, device),
        "affine+elastic+erase": ours(KORNIA_MATCH, device),
    }
    entries.update({f"{name} alone": ours(dataclasses.replace(OFF, **kw), device) for name, kw in ALONE.items()})
    kornia = kornia_pipeline(device)
    if kornia is not None:
        entries["kornia affine+elastic+erase"] = kornia

    rows: dict[str, dict[str, float]] = {name: {} for name in entries}
    for batch in args.batches:
        for name, speed in images_per_s(entries, digits(batch, device), args.repeats).items():
            rows[name][str(batch)] = speed

    width = max(map(len, rows)) + 2
    print(f"augmentation throughput, images/s (median of {args.repeats}), device={device}, "
          f"threads={torch.get_num_threads()}, {HEIGHT}x{WIDTH}")
    print("op".ljust(width) + "".join(f"batch {b}".rjust(14) for b in args.batches))
    for name, by_batch in rows.items():
        print(name.ljust(width) + "".join(f"{by_batch[str(b)]:14,.0f}" for b in args.batches))
    ratios = None
    if kornia is None:
        print("kornia is not importable: skipped the kornia comparison (pip install kornia to include it)")
    else:
        ratios = {str(b): rows["affine+elastic+erase"][str(b)] / rows["kornia affine+elastic+erase"][str(b)]
                  for b in args.batches}
        print("digitrec / kornia speed ratio (affine+elastic+erase): "
              + ", ".join(f"batch {b}: {r:.2f}x" for b, r in ratios.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "image_size": [HEIGHT, WIDTH],
        "repeats": args.repeats,
        # Other processes on the machine skew timings; CPU runs with more than one thread suffer most.
        "load_average_1min_before": load_before,
        "unit": "images/s (median)",
        "full_config": dataclasses.asdict(FULL),
        "results": rows,
        "kornia_ratio": ratios,
    }
    if kornia is not None:
        import kornia as kornia_module

        report["kornia_version"] = kornia_module.__version__
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
