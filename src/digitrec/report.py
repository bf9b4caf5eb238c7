"""Pure metrics and pictures for evaluation reports: no checkpoints, no data loading.

Every function takes tensors or plain Python values. Writers create parent folders, write
atomically (temp file in the same folder, then os.replace) and return the final path.
Figures are drawn on an explicit Agg canvas, so pyplot's global state is never touched.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitrec.errors import DigitrecError
from digitrec.files import atomic_path

DPI = 120
GRID_COLUMNS = 6

__all__ = [
    "compute_metrics",
    "confusion_matrix",
    "worst_errors",
    "save_confusion_matrix",
    "save_training_curves",
    "save_error_grid",
    "write_json",
]


# ----------------------------------------------------------------------------- metrics


def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None) -> None:
    """Raise DigitrecError unless logits is [N, C] and labels is [N] of class ids in range."""
    if logits.ndim != 2:
        raise DigitrecError(f"logits must have shape [N, classes], got {list(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise DigitrecError(
            f"labels must have shape [{logits.shape[0]}] to match logits, got {list(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DigitrecError(f"labels must be integer class ids, got dtype {labels.dtype}")
    classes = logits.shape[1] if num_classes is None else num_classes
    if num_classes is not None and logits.shape[1] != num_classes:
        raise DigitrecError(f"logits have {logits.shape[1]} columns, expected num_classes={num_classes}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        raise DigitrecError(
            f"labels must lie in 0..{classes - 1}, got {int(labels.min())}..{int(labels.max())}"
        )


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """Elementwise num / den with 0.0 wherever den is 0."""
    return torch.where(den > 0, num / den.clamp(min=1e-12), torch.zeros_like(num))


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [num_classes, num_classes]: rows are true classes, columns predicted ones."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def _per_class(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    cm = cm.double()
    tp, predicted, support = cm.diagonal(), cm.sum(dim=0), cm.sum(dim=1)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> dict:
    """JSON-ready accuracy, loss, per-class precision/recall/F1, macro F1, confusion matrix, top-2."""
    logits, labels = torch.as_tensor(logits).detach().cpu().float(), torch.as_tensor(labels).detach().cpu()
    _check_logits_labels(logits, labels, num_classes)
    if labels.numel() == 0:
        raise DigitrecError("cannot compute metrics on zero samples")
    labels = labels.long()
    preds = logits.argmax(dim=1)
    cm = confusion_matrix(preds, labels, num_classes)
    precision, recall, f1, support = _per_class(cm)
    present = (support > 0) | (cm.sum(dim=0) > 0)  # macro F1 over classes seen or predicted, as sklearn
    topk = logits.topk(min(2, num_classes), dim=1).indices
    accuracy = (preds == labels).double().mean().item()
    return {
        "accuracy": accuracy,
        "error_rate": 1.0 - accuracy,
        "loss": F.cross_entropy(logits, labels).item(),
        "n": int(labels.numel()),
        "per_class": [
            {
                "class": c,
                "precision": precision[c].item(),
                "recall": recall[c].item(),
                "f1": f1[c].item(),
                "support": int(support[c].item()),
            }
            for c in range(num_classes)
        ],
        "macro_f1": f1[present].mean().item(),
        "confusion_matrix": cm.tolist(),
        "top2_accuracy": (topk == labels[:, None]).any(dim=1).double().mean().item(),
    }


def worst_errors(logits: torch.Tensor, labels: torch.Tensor, k: int = 36) -> torch.Tensor:
    """Indices of misclassified samples, most confident wrong answer first (at most k)."""
    logits, labels = torch.as_tensor(logits).detach().cpu().float(), torch.as_tensor(labels).detach().cpu()
    _check_logits_labels(logits, labels, None)
    if k < 0:
        raise DigitrecError(f"k must be >= 0, got {k}")
    confidence, preds = logits.softmax(dim=1).max(dim=1)
    wrong = (preds != labels.long()).nonzero().squeeze(1)
    order = confidence[wrong].argsort(descending=True, stable=True)
    return wrong[order[:k]]


# ----------------------------------------------------------------------------- writing


def _atomic_write(path: str | os.PathLike, suffix: str, write: Callable[[Path], None]) -> Path:
    """Call write(temp) on a temp file beside path, fsync it, then os.replace it onto path."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    """Convert tensors, numpy values, paths and tuples to JSON types; NaN and inf become null."""
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":
        return _jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(key): _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(value) for value in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write obj as pretty, strict JSON atomically, creating parent folders; return the path."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return _atomic_write(path, ".tmp", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _new_figure(width: float, height: float) -> Figure:
    """A figure bound to its own Agg canvas, independent of pyplot."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write fig to path as a PNG atomically and release its memory."""
    try:
        return _atomic_write(path, ".png", lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        fig.clear()


# ----------------------------------------------------------------------------- confusion matrix


def _as_matrix(cm: Sequence[Sequence[int]] | torch.Tensor) -> torch.Tensor:
    """Validate a square, non-negative confusion matrix and return it as an int64 tensor."""
    matrix = torch.as_tensor(cm).detach().cpu()
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise DigitrecError(f"confusion matrix must be square [C, C], got shape {list(matrix.shape)}")
    if (matrix < 0).any():
        raise DigitrecError("confusion matrix counts must be non-negative")
    return matrix.long()


def _draw_cell_counts(ax: Any, counts: torch.Tensor, shade: torch.Tensor) -> None:
    """Write each count in its cell, white on dark cells, grey for zeros."""
    size = counts.shape[0]
    fontsize = 9 if size <= 10 else max(5, 90 // size)
    for row in range(size):
        for col in range(size):
            count = int(counts[row, col])
            colour = "#b0b0b0" if count == 0 else ("white" if shade[row, col] > 0.6 else "black")
            ax.text(col, row, str(count), ha="center", va="center", fontsize=fontsize, color=colour)


def save_confusion_matrix(
    cm: list[list[int]] | torch.Tensor, path: str | os.PathLike, title: str = ""
) -> Path:
    """Heatmap of counts, coloured by log share of each true class so rare errors stay visible."""
    counts = _as_matrix(cm)
    size = counts.shape[0]
    share = _safe_div(counts.double(), counts.sum(dim=1, keepdim=True).double().expand_as(counts))
    positive = share[share > 0]
    vmin = 0.5 * min(positive.min().item(), 0.01) if positive.numel() else 1e-3
    norm = LogNorm(vmin=vmin, vmax=1.0)
    masked = share.masked_fill(share == 0, float("nan")).numpy()
    side = max(5.0, 0.55 * size + 1.5)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(masked, cmap=colormaps["Blues"].with_extremes(bad="white"), norm=norm)
    shade = torch.nan_to_num(torch.as_tensor(norm(share.clamp(min=vmin).numpy()).data), nan=0.0)
    _draw_cell_counts(ax, counts, shade)
    ax.set_xticks(range(size), [str(c) for c in range(size)])
    ax.set_yticks(range(size), [str(c) for c in range(size)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion matrix (n={int(counts.sum())})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class (log scale)")
    fig.tight_layout()
    return _save_png(fig, path)


# ----------------------------------------------------------------------------- training curves


def _series(history: list[dict], key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    """(epochs, values) for the records that carry key with a non-None value."""
    epochs, values = [], []
    for position, record in enumerate(history, start=1):
        if record.get(key) is not None:
            epochs.append(float(record.get("epoch", position)))
            values.append(float(record[key]) * scale)
    return epochs, values


def _plot_panel(ax: Any, history: list[dict], keys: list[tuple[str, str]], title: str, ylabel: str,
                scale: float = 1.0) -> list[float]:
    """Plot each present (key, label) series on ax; say 'no data' if none is present."""
    plotted: list[float] = []
    for key, label in keys:
        epochs, values = _series(history, key, scale)
        if values:
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
            plotted.extend(values)
    if not plotted:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_yticks([])
    elif len(keys) > 1:
        ax.legend()
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return plotted


def _epoch_axis(ax: Any, history: list[dict]) -> None:
    """Integer epoch ticks over the whole history, padded so a single epoch is centred."""
    epochs = [float(record.get("epoch", position)) for position, record in enumerate(history, start=1)]
    low, high = min(epochs), max(epochs)
    pad = max(0.5, 0.03 * (high - low))
    ax.set_xlim(low - pad, high + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def save_training_curves(history: list[dict], path: str | os.PathLike) -> Path:
    """Three panels from per-epoch records: loss, accuracy (percent) and learning rate."""
    if not history:
        raise DigitrecError("training history is empty: nothing to plot")
    fig = _new_figure(13.0, 3.8)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    _plot_panel(loss_ax, history, [("train_loss", "train"), ("val_loss", "val")], "loss", "cross-entropy")
    _plot_panel(acc_ax, history, [("train_acc", "train"), ("val_acc", "val")], "accuracy", "%", 100.0)
    rates = _plot_panel(lr_ax, history, [("lr", "lr")], "learning rate", "lr")
    if rates and min(rates) > 0 and max(rates) / min(rates) >= 10:
        lr_ax.set_yscale("log")
    for ax in (loss_ax, acc_ax, lr_ax):
        _epoch_axis(ax, history)
    fig.tight_layout()
    return _save_png(fig, path)


# ----------------------------------------------------------------------------- error grid


def _confidences(probs: Any, preds: torch.Tensor) -> torch.Tensor:
    """Confidence in each prediction from probs [K] or full probabilities [K, C]."""
    probs = torch.as_tensor(probs, dtype=torch.float64).detach().cpu()
    if probs.ndim == 2 and probs.shape[0] == preds.shape[0]:
        return probs.gather(1, preds.long()[:, None]).squeeze(1)
    if probs.ndim == 1 and probs.shape[0] == preds.shape[0]:
        return probs
    count = preds.shape[0]
    raise DigitrecError(f"probs must have shape [{count}] or [{count}, C], got {list(probs.shape)}")


def _grid_inputs(images: torch.Tensor, labels: Any, preds: Any, probs: Any) -> tuple[torch.Tensor, ...]:
    """Validate and return images [K, H, W], labels [K], preds [K] and confidences [K]."""
    images = torch.as_tensor(images).detach().cpu().float()
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise DigitrecError(f"images must have shape [K, 28, 28] or [K, 1, 28, 28], got {list(images.shape)}")
    labels = torch.as_tensor(labels).detach().cpu().reshape(-1)
    preds = torch.as_tensor(preds).detach().cpu().reshape(-1)
    count = images.shape[0]
    if labels.shape[0] != count or preds.shape[0] != count:
        raise DigitrecError(
            f"got {count} images but {labels.shape[0]} labels and {preds.shape[0]} predictions"
        )
    return images, labels, preds, _confidences(probs, preds)


def _empty_grid(title: str) -> Figure:
    """A small figure that says there are no errors."""
    fig = _new_figure(4.0, 2.0)
    fig.text(0.5, 0.5, "no errors", ha="center", va="center", fontsize=18, color="#2a7a2a")
    if title:
        fig.suptitle(title)
    return fig


def save_error_grid(
    images: torch.Tensor, labels: Any, preds: Any, probs: Any, path: str | os.PathLike, title: str = ""
) -> Path:
    """Grid of images, each titled 'true 3 / pred 5 (97%)'; K=0 writes a 'no errors' picture."""
    images, labels, preds, confidence = _grid_inputs(images, labels, preds, probs)
    count = images.shape[0]
    if count == 0:
        return _save_png(_empty_grid(title), path)
    cols = min(GRID_COLUMNS, count)
    rows = math.ceil(count / cols)
    fig = _new_figure(1.7 * cols, 1.85 * rows + (0.4 if title else 0.0))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index < count:
            true, pred = int(labels[index]), int(preds[index])
            ax.imshow(images[index].clamp(0, 1).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            caption = f"true {true} / pred {pred} ({confidence[index].item():.0%})"
            ax.set_title(caption, fontsize=8, color="#b00000" if true != pred else "#2a7a2a")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_png(fig, path)
