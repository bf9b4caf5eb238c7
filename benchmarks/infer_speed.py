"""Inference speed of every backend on the MNIST test set: images/s and p50/p99 latency per batch size,
with accuracy beside each row; all backends measured in one run, interleaved, after a warm-up.

    python benchmarks/infer_speed.py                          # the shipped default model
    python benchmarks/infer_speed.py --model runs/demo/best.pt --batch 1,32,256 --repeats 7
"""
from __future__ import annotations

import argparse

from digitrec.bench import DEFAULT_BATCHES, bench, format_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a checkpoint, default, default-ensemble or an exported file")
    p.add_argument("--backend", default="", help="comma-separated backends (default: all five)")
    p.add_argument("--batch", default=",".join(map(str, DEFAULT_BATCHES)), help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per backend and batch size")
    p.add_argument("--images-per-round", type=int, default=2048, help="images each backend runs per round")
    p.add_argument("--out", default="benchmarks/results/infer_speed.json")
    args = p.parse_args()
    result = bench(args.model, [b for b in args.backend.split(",") if b] or None,
                   [int(b) for b in args.batch.split(",")], repeats=args.repeats,
                   images_per_round=args.images_per_round, out=args.out, log=print)
    print(format_table(result))
    print(f"speed-up over PyTorch eager: {result['speedup_vs_torch']}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
