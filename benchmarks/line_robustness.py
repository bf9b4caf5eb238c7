"""One-line numbers made as the evaluation set's are, but with one way of writing them pushed past the set's
range: a steeper slope, a drifting baseline, wider or tighter gaps, digits of uneven size or height, smaller or
bigger digits, harsher JPEG, more blur; and lines made the simplest way there is (`tiles`: MNIST's whole 28x28 boxes
side by side, as they come). Each variant's whole-string accuracy, with the line reader and with
segmentation alone, shows what a held-out set made another way would cost. Prints a table and writes JSON.

    python benchmarks/line_robustness.py [--n 200] [--only base slope6 ...]
    python benchmarks/line_robustness.py --digits val --lines runs/lines/lines.pt   # choose a line reader by
                                                        # lines of validation digits, never the test digits
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_quality import write_json  # noqa: E402
from read_sets import Context, LineRecipe, Sample, encode, load_test_digits, make_line  # noqa: E402

from digitrec.data.mnist import load_splits  # noqa: E402
from digitrec.read.recognizer import Recognizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "line_robustness.json"
BASE = LineRecipe()


def make_tiles(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """A number of 3-10 MNIST digits made the simplest way: their whole 28x28 boxes side by side (so 8 px or more
    apart, but for a digit that fills its box), dark on white, enlarged 1-4x, JPEG quality 50-90."""
    idx = rng.integers(0, len(ctx.labels), int(rng.integers(3, 11)))
    strip = Image.fromarray(255 - np.hstack([ctx.images[j] for j in idx]))
    scale = float(rng.uniform(1.0, 4.0))
    strip = strip.resize((round(strip.width * scale), round(strip.height * scale)), Image.Resampling.BILINEAR)
    return Sample(strip, "".join(str(ctx.labels[j]) for j in idx), "jpg", int(rng.integers(50, 91)),
                  {"mnist_indices": idx.tolist(), "scale": round(scale, 2)})


VARIANTS: dict[str, LineRecipe | Callable[[Context, int, np.random.Generator], Sample]] = {
    # name: the evaluation set's style with one knob moved, or (tiles) another maker
    "base": BASE,
    "slope6": replace(BASE, skew=6.0, skew_p=1.0),
    "drift": replace(BASE, drift=0.5),
    "wide_gaps": replace(BASE, gaps=(0.6, 1.6)),
    "touching30": replace(BASE, touch_p=0.3),
    "small": replace(BASE, height=(16, 28)),
    "big": replace(BASE, height=(120, 300)),
    "jpeg15_40": replace(BASE, quality=(15, 40)),
    "blur1.5_2.5": replace(BASE, blur=(1.5, 2.5)),
    "rise15": replace(BASE, rise=0.15),
    "size35": replace(BASE, size=(0.65, 1.35)),
    "rows2": replace(BASE, rows=2),  # two numbers one under another, read top to bottom
    "rows3": replace(BASE, rows=3),
    "short": replace(BASE, digits=(1, 2)),  # a lone digit or a pair, as a form's field or an age holds
    "tiles": make_tiles,
}


def run(n: int, only: Sequence[str], seed: int, data_dir: Path | None = None, digits: str = "test",
        lines: str = "default") -> dict[str, Any]:
    """Read n lines of each chosen variant with the reader (its line reader `lines`) and with segmentation alone,
    made of MNIST test digits or of the validation digits held out of training (`digits`: "test" or "val")."""
    images, labels = load_test_digits(data_dir) if digits == "test" else validation_digits(data_dir)
    ctx = Context(images, labels, seed, [], [])
    readers = {"reader": Recognizer.load(lines=lines), "segmentation_alone": Recognizer.load(lines=None)}
    out: dict[str, Any] = {}
    for name in only:
        style = VARIANTS[name]
        start = time.perf_counter()
        right = {k: 0 for k in readers}
        misses: list[dict[str, str]] = []
        for i in range(n):
            rng = np.random.default_rng([seed, zlib.crc32(name.encode()), i])
            sample = make_line(ctx, i, rng, style) if isinstance(style, LineRecipe) else style(ctx, i, rng)
            data = encode(sample)
            for key, reader in readers.items():
                got = reader.read(data).digits
                right[key] += got == sample.label
                if key == "reader" and got != sample.label and len(misses) < 5:
                    misses.append({"truth": sample.label, "read": got})
        recipe = asdict(style) if isinstance(style, LineRecipe) else style.__name__
        out[name] = {"n": n, **{k: right[k] / n for k in readers}, "style": recipe, "misses": misses,
                     "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name:12s} {out[name]['reader']:7.1%} {out[name]['segmentation_alone']:9.1%}   "
              f"{', '.join((m['truth'] + '→' + (m['read'] or '∅')).replace(chr(10), '/') for m in misses[:3])}", flush=True)
    return out


def validation_digits(data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training digits every training run holds out for validation (the default split), as uint8 [N, 28, 28]
    and labels: lines of them choose between line readers without looking at the test digits."""
    val = load_splits(data_dir)["val"]
    return val.images.reshape(-1, 28, 28).numpy(), val.labels.numpy().astype(np.int64)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="lines per variant (default 200)")
    parser.add_argument("--only", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=9001, help="not the evaluation sets' seeds (default 9001)")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST folder (default $DIGITREC_DATA or cache)")
    parser.add_argument("--digits", choices=("test", "val"), default="test",
                        help="MNIST test digits, or the validation digits held out of training (to choose by)")
    parser.add_argument("--lines", default="default", help="the line reader: default or a lines.pt/.onnx path")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'variant':12s} {'reader':>7s} {'seg. alone':>9s}   first misses (truth→read)")
    results = run(args.n, args.only, args.seed, args.data_dir, args.digits, args.lines)
    write_json(args.json, {"seed": args.seed, "digits": args.digits, "lines": args.lines, "variants": results})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
