"""Runners that turn a batch of 28x28 images into class probabilities, behind one interface."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from digitrec.errors import DigitrecError
from digitrec.train.checkpoint import load_checkpoint, model_from_checkpoint


class Backend(Protocol):
    """Anything that maps float32 [B, 1, 28, 28] in [0, 1] to probabilities [B, 10]."""

    name: str
    card: dict

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """PyTorch eager inference; several models are averaged (an ensemble) in probability space."""

    def __init__(self, models: list[nn.Module], cards: list[dict], name: str) -> None:
        self.models = [m.eval() for m in models]
        self.card = cards[0] if len(cards) == 1 else {"ensemble": cards}
        self.name = name

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        probs = sum(m(x).float().softmax(1) for m in self.models) / len(self.models)
        return probs.numpy()


def torch_backend(paths: list[Path], name: str) -> TorchBackend:
    """Load one checkpoint (or several, averaged) for eager PyTorch inference."""
    models, cards = [], []
    for path in paths:
        ckpt = load_checkpoint(path)
        models.append(model_from_checkpoint(ckpt, source=f"model {path}"))
        cards.append(ckpt.get("card", {}))
    if not models:
        raise DigitrecError(f"model {name!r}: no weight files found")
    return TorchBackend(models, cards, name)
