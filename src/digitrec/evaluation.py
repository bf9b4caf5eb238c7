"""Evaluate a checkpoint on a split: metrics as JSON, and the confusion matrix, curves and errors as PNGs."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from digitrec.data.mnist import load_splits
from digitrec.errors import DigitrecError
from digitrec.models.inference import batched_logits
from digitrec.report import (
    compute_metrics,
    save_confusion_matrix,
    save_error_grid,
    save_training_curves,
    worst_errors,
    write_json,
)
from digitrec.training.checkpoint import load_checkpoint, model_from_checkpoint
from digitrec.training.loop import resolve_device

SPLITS = ("test", "val")


def evaluate_checkpoint(
    path: str | Path | Sequence[str | Path],
    *,
    split: str = "test",
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    pictures: bool = True,
    log=print,
) -> dict[str, Any]:
    """Score a checkpoint on the test or validation split and write the report beside it (or into out_dir).

    Several checkpoints are scored as an ensemble: their class probabilities are averaged.
    """
    if split not in SPLITS:
        raise DigitrecError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    ckpts = [load_checkpoint(p) for p in paths]
    models = [model_from_checkpoint(c, source=f"checkpoint {p}") for c, p in zip(ckpts, paths)]
    ckpt = ckpts[0]
    cfg = ckpt.get("config", {})
    data_dir = data_dir or cfg.get("data_dir") or None
    splits = load_splits(data_dir, val_size=cfg.get("val_size", 5000), split_seed=cfg.get("split_seed", 0), log=log)
    data = splits[split]
    if len(data) == 0:
        raise DigitrecError(f"checkpoint {path} was trained without a validation split; evaluate on --split test")
    dev = resolve_device(device)
    models = [m.to(dev).to(memory_format=torch.channels_last) for m in models]
    images, labels = data.images.to(dev), data.labels.to(dev)
    _logits(models, images[:1024], batch_size)  # warm-up, so the timing is steady-state
    t0 = time.perf_counter()
    logits = _logits(models, images, batch_size)
    seconds = time.perf_counter() - t0
    metrics = compute_metrics(logits.cpu(), labels.cpu())
    names = [c["model"]["name"] for c in ckpts]
    metrics.update(
        split=split,
        checkpoint=str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        model=names[0] if len(names) == 1 else f"ensemble of {len(names)}: {', '.join(names)}",
        epoch=ckpt.get("train_state", {}).get("epoch"),
        images_per_s=round(len(data) / seconds, 1),
        device=str(dev),
    )
    out = Path(out_dir) if out_dir else Path(paths[0]).parent
    suffix = "" if split == "test" else "-val"
    metrics["files"] = {"metrics": str(write_json(metrics, out / f"metrics{suffix}.json"))}
    if pictures:
        metrics["files"].update(_pictures(ckpt, data.images, logits.cpu(), labels.cpu(), out, suffix, split))
        write_json(metrics, out / f"metrics{suffix}.json")
    return metrics


def _logits(models: list[torch.nn.Module], images: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """One model's logits, or the log of several models' mean probabilities."""
    if len(models) == 1:
        return batched_logits(models[0], images, batch_size)
    probs = sum(batched_logits(m, images, batch_size).softmax(1) for m in models) / len(models)
    return probs.clamp_min(1e-12).log()


def _pictures(ckpt, images, logits, labels, out: Path, suffix: str, split: str) -> dict[str, str]:
    """The confusion matrix, training curves and a grid of the most confident mistakes."""
    files = {}
    metrics = compute_metrics(logits, labels)
    name = ckpt["model"]["name"]
    files["confusion_matrix"] = str(
        save_confusion_matrix(metrics["confusion_matrix"], out / f"confusion_matrix{suffix}.png", title=f"{name} on {split}")
    )
    history = ckpt.get("train_state", {}).get("history") or []
    if history:
        files["curves"] = str(save_training_curves(history, out / "curves.png"))
    idx = worst_errors(logits, labels, k=36)
    probs = logits.softmax(1)
    preds = logits.argmax(1)
    files["errors"] = str(
        save_error_grid(
            images[idx].float() / 255, labels[idx], preds[idx], probs[idx, preds[idx]], out / f"errors{suffix}.png",
            title=f"{name}: most confident mistakes on {split}",
        )
    )
    return files
