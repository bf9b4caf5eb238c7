"""Canvas exports made other ways than the evaluation set's: what a held-out canvas set could cost.

The evaluation canvases (`read_sets.py`) cut an MNIST test digit to its ink and scale it, sometimes redrawn with a
round pen. Here the digit's whole 28x28 MNIST box is enlarged onto the 280x280 transparent canvas as it is, the
simplest way to make a canvas from MNIST (`plain`: bilinear, 84-280 px; `nearest`: blocky pixels; `small`: 28-84 px),
beside the set's own recipe (`set`). Each variant is read as one digit (`--single`) with the shipped reader and with
the letter gate off, so the gate's cost shows. Prints a table and writes JSON.

    python benchmarks/canvas_robustness.py [--n 2000] [--only set plain nearest small] [--gate PATH]
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_quality import write_json  # noqa: E402
from read_sets import CANVAS, Context, Sample, encode, load_test_digits, make_canvas  # noqa: E402

from digitrec.read.recognizer import Recognizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "canvas_robustness.json"
Maker = Callable[[Context, int, np.random.Generator], tuple[bytes, str]]  # a canvas's PNG bytes and its label


def boxed(size: tuple[int, int], resample: Image.Resampling) -> Maker:
    """A maker of canvases holding an MNIST test digit's whole 28x28 box enlarged to `size` px (inclusive range)."""

    def make(ctx: Context, i: int, rng: np.random.Generator) -> tuple[bytes, str]:
        idx = int(rng.integers(len(ctx.labels)))
        side = int(rng.integers(size[0], size[1] + 1))
        box = np.asarray(Image.fromarray(ctx.images[idx]).resize((side, side), resample))
        top, left = (int(rng.integers(0, CANVAS - side + 1)) for _ in range(2))
        rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
        rgba[top:top + side, left:left + side, 3] = box
        label = str(ctx.labels[idx])
        return encode(Sample(Image.fromarray(rgba, "RGBA"), label)), label

    return make


def from_set(ctx: Context, i: int, rng: np.random.Generator) -> tuple[bytes, str]:
    """The evaluation set's own recipe (`read_sets.make_canvas`)."""
    sample = make_canvas(ctx, i, rng)
    return encode(sample), sample.label


VARIANTS: dict[str, Maker] = {
    "set": from_set,
    "plain": boxed((84, 280), Image.Resampling.BILINEAR),
    "nearest": boxed((84, 280), Image.Resampling.NEAREST),
    "small": boxed((28, 84), Image.Resampling.BILINEAR),
}


def run(n: int, only: Sequence[str], seed: int, gate: str, data_dir: Path | None = None) -> dict[str, Any]:
    """Read n canvases of each chosen variant as one digit, with the letter gate and without it."""
    images, labels = load_test_digits(data_dir)
    ctx = Context(images, labels, seed, [], [])
    readers = {"reader": Recognizer.load(gate=None if gate == "none" else gate), "no_gate": Recognizer.load(gate=None)}
    out: dict[str, Any] = {}
    for name in only:
        start = time.perf_counter()
        right = {k: 0 for k in readers}
        gated = 0
        for i in range(n):
            data, label = VARIANTS[name](ctx, i, np.random.default_rng([seed, zlib.crc32(name.encode()), i]))
            results = {key: reader.read(data, single=True) for key, reader in readers.items()}
            for key, res in results.items():
                right[key] += res.digits == label
            gated += (results["reader"].reason or "").startswith("not a digit") and results["no_gate"].digits == label
        out[name] = {"n": n, **{k: right[k] / n for k in readers}, "right_ones_gate_turned_away": gated,
                     "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name:8s} {out[name]['reader']:8.2%} {out[name]['no_gate']:8.2%} {gated:6d}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="canvases per variant (default 2000)")
    parser.add_argument("--only", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=9001, help="not the evaluation sets' seeds (default 9001)")
    parser.add_argument("--gate", default="default", help="the letter gate to read with (default: the shipped one)")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST folder (default $DIGITREC_DATA or cache)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'variant':8s} {'reader':>8s} {'no gate':>8s} {'gated':>6s}  (gated: right without the gate, turned away with it)")
    results = run(args.n, args.only, args.seed, args.gate, args.data_dir)
    write_json(args.json, {"seed": args.seed, "gate": args.gate, "variants": results})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
