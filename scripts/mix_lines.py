"""Mix line readers into one: the shipped line reader is the mean of the column probabilities of two LineNets,
one trained on the evaluation set's style of line and one fine-tuned from it on looser writing (`--loose-p`).

    python scripts/mix_lines.py runs/lines-ft/lines.pt runs/lines-loose/lines.pt --out src/digitrec/weights/lines.pt

Writes the mixture's checkpoint and, beside it, its ONNX export (`lines.onnx`, what the reader runs), both
atomically; the export is checked against PyTorch as `digitrec train-lines` checks its own.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from digitrec.read.lines import export_onnx, mix_checkpoints


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="line readers written by `digitrec train-lines`")
    p.add_argument("--out", required=True, help="checkpoint to write; its ONNX export goes beside it")
    args = p.parse_args()
    out = mix_checkpoints(args.checkpoints, args.out)
    onnx = export_onnx(out, out.with_suffix(".onnx"))
    print(f"wrote {out} and {onnx}: {len(args.checkpoints)} line readers read as one")


if __name__ == "__main__":
    main()
