"""Random noise images read as a line and as one digit (`--single`): how often a digit comes back above the
threshold. Salt and pepper on light, dark and grey pages is the target (none should); checkerboards, stripes
and blurred noise (blotches) are reported beside it. Prints a table and writes JSON.

    python benchmarks/noise_fuzz.py --seeds 11 12 13 --n 300
"""
from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.read.recognizer import Recognizer

RESULTS = Path(__file__).resolve().parent / "results" / "noise_fuzz.json"
PAGES = {"light": 230.0, "dark": 30.0, "grey": 130.0}


def salt_and_pepper(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A page of one grey level with 0.5-40 % of its pixels black (light page), white (dark) or both (grey)."""
    page = str(rng.choice(list(PAGES)))
    h, w = (int(v) for v in rng.integers(20, 900, 2))
    img, dots, density = np.full((h, w), PAGES[page]), rng.random((h, w)), rng.uniform(0.005, 0.4)
    if page == "light":
        img[dots < density] = 0
    elif page == "dark":
        img[dots < density] = 255
    else:
        img[dots < density / 2], img[dots > 1 - density / 2] = 0, 255
    return f"salt_pepper_{page}", img


def pattern(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A checkerboard or stripes (horizontal, vertical or diagonal) of period 4-60 px."""
    h, w = (int(v) for v in rng.integers(20, 900, 2))
    yy, xx = np.mgrid[:h, :w]
    period = int(rng.integers(4, 60))
    if rng.random() < 0.5:
        return "checkerboard", np.where(((yy // period) + (xx // period)) % 2 == 0, 245.0, float(rng.integers(0, 150)))
    along = (yy, xx, yy + xx)[int(rng.integers(3))]
    return "stripes", np.where(along % period < max(1, period // 3), float(rng.integers(0, 150)), 245.0)


def blotches(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """Gaussian noise blurred into blotches (sigma 1-10 px) around mid-grey, of contrast 20-80 grey levels."""
    h, w = (int(v) for v in rng.integers(20, 900, 2))
    img = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), rng.uniform(1, 10))
    return "blotches", np.clip(128 + rng.uniform(20, 80) * img / max(img.std(), 1e-9), 0, 255)


def run(seeds: list[int], n: int, model: str) -> dict[str, Any]:
    """Read n salt-and-pepper images and n/3 patterns and n/3 blotches per seed, as a line and as one digit;
    count the answers above the threshold."""
    rec = Recognizer.load(model)
    counts: dict[str, dict[str, int]] = {}
    accepted: list[dict[str, Any]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for make, count in ((salt_and_pepper, n), (pattern, n // 3), (blotches, n // 3)):
            for _ in range(count):
                kind, img = make(rng)
                buf = io.BytesIO()
                Image.fromarray(img.astype(np.uint8)).save(buf, "PNG")
                for single in (False, True):
                    res = rec.read(buf.getvalue(), single=single)
                    row = counts.setdefault(f"{kind} {'single' if single else 'line'}", {"reads": 0, "digits": 0})
                    row["reads"] += 1
                    if res.digits:
                        row["digits"] += 1
                        accepted.append({"seed": seed, "kind": kind, "single": single, "shape": list(img.shape),
                                         "digits": res.digits, "confidence": round(res.confidence, 3)})
    return {"seeds": seeds, "n": n, "model": model, "counts": counts, "accepted": accepted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--n", type=int, default=300,
                        help="salt-and-pepper images a seed (patterns, blotches: a third each)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    out = run(args.seeds, args.n, args.model)
    print(f"{'kind':28s} {'reads':>6s} {'digit above threshold':>22s}")
    for kind, row in sorted(out["counts"].items()):
        print(f"{kind:28s} {row['reads']:6d} {row['digits']:8d} ({row['digits'] / row['reads']:.2%})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(f".{args.json.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
