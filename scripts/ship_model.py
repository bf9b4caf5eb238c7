"""Turn a trained checkpoint into the shipped model: a small weights file and its model card.

    python scripts/ship_model.py runs/shipped/best.pt --out src/digitrec/weights/default.pt \\
        --card src/digitrec/weights/MODEL_CARD.md [--quality benchmarks/results/read_quality.json]

It evaluates the checkpoint on the MNIST test set (evaluation only: nothing is tuned on it),
strips optimizer and RNG state, and writes the card: command, config, data checksums, test
accuracy, per-class figures and, when given, the robustness figures of benchmarks/read_quality.py.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import yaml

from digitrec.evaluation import evaluate_checkpoint
from digitrec.training.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="weights file to write")
    p.add_argument("--card", required=True, help="model card (Markdown) to write")
    p.add_argument("--command", default="digitrec train --config configs/shipped.yaml --name shipped",
                   help="the training command, as it goes on the card")
    p.add_argument("--quality", help="JSON written by benchmarks/read_quality.py")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        m = evaluate_checkpoint(args.checkpoint, out_dir=tmp, pictures=False, log=lambda _: None)
    metrics = {"test_accuracy": m["accuracy"], "test_loss": m["loss"], "test_n": m["n"]}
    release = release_checkpoint(load_checkpoint(args.checkpoint), metrics)
    out = save_checkpoint(release, args.out)
    quality = json.loads(Path(args.quality).read_text()) if args.quality else None
    Path(args.card).write_text(card_markdown(release, m, args.command, out, quality))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB), test accuracy {100 * m['accuracy']:.2f}%; card {args.card}")


def card_markdown(release: dict, m: dict, command: str, out: Path, quality: dict | None) -> str:
    """The model card as Markdown."""
    card = release["card"]
    lines = [
        f"# Model card: `{out.stem}`",
        "",
        f"- Architecture: `{card['architecture']}` {card['model_args']}, {card['num_params']:,} parameters, "
        f"{out.stat().st_size / 1024:.0f} KB on disk (fp32)",
        "- Input: 28x28 float in [0, 1], white ink on black (MNIST form); normalisation "
        f"(mean {card['input']['normalisation']['mean']}, std {card['input']['normalisation']['std']}) inside the model",
        f"- Trained by: `{command}` (digitrec {card['versions']['digitrec']}, torch {card['versions']['torch']}); "
        f"the checkpoint of epoch {release['train_state']['epoch']} of {release['config'].get('epochs')}, chosen on "
        "validation accuracy; weights are the exponential moving average when the run kept one",
        "- Data: MNIST train (55,000 images; 5,000 held out for validation and model selection). "
        "The MNIST test set is used only for the figures below; never for training or selection.",
        *_font_lines(release["config"]),
        "",
        "## Test set (MNIST, 10,000 images)",
        "",
        f"Accuracy **{100 * m['accuracy']:.2f} %**, mean loss {m['loss']:.4f} "
        f"(`digitrec eval --model default --json`).",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
              for r in m["per_class"]]
    if quality:
        lines += ["", "## Real inputs", "", f"`{quality['command']}` on sets from `benchmarks/read_sets.py` "
                  "(MNIST test digits re-rendered as scans, photos, canvases and lines; handwriting fonts; blanks):",
                  "", "| set | n | measure | value | target | |", "| --- | --- | --- | --- | --- | --- |"]
        for name, r in quality["sets"].items():
            lines.append(f"| {name} | {r['n']} | {r['metric']} | {100 * r[r['metric']]:.2f} % | {r['target']} | "
                         f"{'pass' if r['passed'] else 'FAIL'} |")
        for name, r in quality.get("latency", {}).items():
            lines.append(f"| latency {name} | | p50 / p99 | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms | | "
                         f"{'pass' if r['passed'] else 'FAIL'} |")
    lines += ["", "## Training config", "", "```yaml", yaml.safe_dump(release["config"], sort_keys=True).strip(), "```",
              "", "## Data checksums (SHA-256 of the uncompressed IDX files)", ""]
    lines += [f"- `{name}` `{digest}`" for name, digest in card["data_sha256"].items()]
    return "\n".join(lines) + "\n"


def _font_lines(config: dict) -> list[str]:
    """What the card says of the font digits a run mixed into its batches (none when it used none)."""
    if not config.get("font_digits"):
        return []
    from digitrec.data.fonts import resolve_fonts

    files = resolve_fonts(config["fonts"])
    return [f"- Font digits: {config['font_digits']:g} of each batch were digits rendered from {len(files)} font files "
            f"({config['font_variants']} renderings of each digit per font; `digitrec.data.fonts`), from: "
            + ", ".join(f"`{f}`" for f in config["fonts"])
            + ". None of the fonts of the evaluation sets (`benchmarks/read_sets.py`) is among them."]


if __name__ == "__main__":
    main()
