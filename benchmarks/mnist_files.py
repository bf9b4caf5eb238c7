"""MNIST digits as 28x28 image files, as a user who tries the reader on MNIST itself saves them: read through the whole
reader (`Recognizer.read`: decode, polarity, cleaning, segmentation, re-framing) against the classifier shown
MNIST's own framing (`Recognizer.classify`). The gap is what the reader's own steps cost on digits that need none
of them. Both polarities (white on black as MNIST stores them, and dark on white), with `--single` and as numbers.
Prints a table and writes JSON.

    python benchmarks/mnist_files.py [--n 10000] [--digits test|val]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_robustness import validation_digits  # noqa: E402
from read_quality import write_json  # noqa: E402
from read_sets import Sample, encode, load_test_digits  # noqa: E402

from digitrec.read.recognizer import Recognizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mnist_files.json"


def png(image: np.ndarray) -> bytes:
    """A 28x28 uint8 image as PNG bytes, written as the evaluation sets' files are (`read_sets.encode`)."""
    return encode(Sample(Image.fromarray(image), ""))


def run(images: np.ndarray, labels: np.ndarray, reader: Recognizer) -> dict[str, Any]:
    """Accuracy of the classifier on MNIST's framing, and of `read` on each polarity and mode; the misreads'
    indices per reading."""
    truth = [str(int(v)) for v in labels]
    classified = reader.classify(images.astype(np.float32) / 255.0).argmax(1)
    out: dict[str, Any] = {"n": len(labels), "classify": float(np.mean(classified == labels))}
    for polarity, files in (("white_on_black", [png(a) for a in images]), ("dark_on_white", [png(255 - a) for a in images])):
        for single in (True, False):
            start = time.perf_counter()
            read = [reader.read(data, single=single).digits for data in files]
            wrong = [i for i, (got, t) in enumerate(zip(read, truth)) if got != t]
            key = f"{polarity} {'single' if single else 'number'}"
            out[key] = {"accuracy": 1 - len(wrong) / len(truth), "wrong": wrong,
                        "read_as_two_or_more": sum(len(read[i]) > 1 for i in wrong),
                        "abstained": sum(read[i] == "" for i in wrong),
                        "seconds": round(time.perf_counter() - start, 1)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="digits to read (default all 10,000)")
    parser.add_argument("--digits", choices=("test", "val"), default="test",
                        help="MNIST test digits, or the validation digits held out of training (to choose by)")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST folder (default $DIGITREC_DATA or cache)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images, labels = load_test_digits(args.data_dir) if args.digits == "test" else validation_digits(args.data_dir)
    out = run(images[:args.n], labels[:args.n], Recognizer.load())
    print(f"{'MNIST ' + args.digits + ' digits as 28x28 files':40s} {'accuracy':>9s} {'read as 2+':>10s} {'abstained':>9s}")
    print(f"{'classifier, MNIST framing':40s} {out['classify']:9.2%}")
    for key, r in out.items():
        if isinstance(r, dict):
            print(f"{key:40s} {r['accuracy']:9.2%} {r['read_as_two_or_more']:10d} {r['abstained']:9d}")
    write_json(args.json, {"digits": args.digits, **out})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
