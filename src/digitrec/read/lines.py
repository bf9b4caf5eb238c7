"""The line reader: LineNet reads a whole line of digits at once, to tell segmentation how many it holds.

Touching digits fool a digit classifier: "16" squeezed into one box looks like a fine 6. A network that sees
the whole line learned where digits begin and end from thousands of touching pairs (`digitrec.data.lines`),
so its digit count settles how a line is cut; the digit classifier still reads each piece.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from digitrec.data.lines import to_line_height
from digitrec.errors import DigitrecError
from digitrec.models.linenet import LineNet, greedy_decode
from digitrec.training.checkpoint import load_checkpoint

SHIPPED = "lines.pt"


class LineReader:
    """Runs LineNet on the ink of one line: the digits it reads, left to right."""

    def __init__(self, model: LineNet) -> None:
        self.model = model.eval()

    @classmethod
    def load(cls, path: str | Path | None = None) -> LineReader:
        """A LineNet checkpoint (`digitrec train-lines`); the one shipped with the package by default."""
        if path is None:
            path = Path(str(resources.files("digitrec") / "weights" / SHIPPED))
        ckpt = load_checkpoint(path)
        if "linenet" not in ckpt:
            raise DigitrecError(f"line reader {path}: not a LineNet checkpoint (made by `digitrec train-lines`)")
        model = LineNet(**ckpt["linenet"]["args"])
        model.load_state_dict(ckpt["model"])
        return cls(model)

    @torch.inference_mode()
    def read(self, ink: np.ndarray) -> np.ndarray:
        """Probabilities [N, 10] of the N digits LineNet reads in `ink` (float [H, W], 1 = ink, the line cut
        to its digits), left to right: each class's highest probability over the digit's columns, normalised."""
        x = to_line_height(torch.from_numpy(np.ascontiguousarray(ink, np.float32)))[None, None]
        logp = self.model(x)
        probs = logp[0, 1:].exp()
        digits = [probs[:, a:b + 1].amax(1) for _, a, b in greedy_decode(logp)[0]]
        if not digits:
            return np.zeros((0, 10), np.float32)
        out = torch.stack(digits)
        return (out / out.sum(1, keepdim=True)).numpy()
