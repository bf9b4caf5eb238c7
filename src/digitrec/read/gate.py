"""The letter gate at read time: is this piece of ink a digit at all?

The digit classifier has no 'none of these' output, so an A or a K comes back as some digit. The gate
(`digitrec train-gate`, shipped as weights/gate.pt) rates a framed 28x28 crop as digit or not; above its
threshold, set in training so that 1 in 2,000 validation digits would be turned away, the reader returns
no digit and says why.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.models.digitnet import DigitNet
from digitrec.training.checkpoint import load_checkpoint, shipped_weights
from digitrec.training.gate import gate_scores

SHIPPED = "gate.pt"


class LetterGate:
    """A trained gate and its threshold: `scores` rates crops, `threshold` is where 'not a digit' begins."""

    def __init__(self, model: DigitNet, threshold: float, source: str) -> None:
        self.model = model.eval()
        self.threshold = threshold
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> LetterGate:
        """A `digitrec train-gate` checkpoint; the shipped one by default."""
        path = Path(path) if path is not None else shipped_weights(SHIPPED)
        ckpt = load_checkpoint(path)
        meta = ckpt.get("gate")
        if not isinstance(meta, dict) or "threshold" not in meta or "args" not in meta:
            raise DigitrecError(f"letter gate {path}: not a gate checkpoint (made by `digitrec train-gate`)")
        model = DigitNet(**meta["args"])
        try:
            model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError) as e:
            raise DigitrecError(f"letter gate {path}: its weights do not fit its network ({e})") from None
        return cls(model, float(meta["threshold"]), str(path))

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """The 'not a digit' probability of each crop ([N, 28, 28] in [0, 1], MNIST form)."""
        return gate_scores(self.model, np.asarray(crops, np.float32))
