"""LineNet: reads a whole line of digits at once (CNN over the line, CTC over its columns).

Input: ink [B, 1, 32, W] in [0, 1] (white on black, the line cut to its ink, 32 px high).
Output: log-probabilities [B, 11, W // 4] over blank (0) and digits 0-9 (1-10), one per 4-px column.
It tells how many digits a line holds and where, which is what segmenting touching digits needs.
"""
from __future__ import annotations

import torch
from torch import nn

from digitrec.models.blocks import ConvBNAct, normalize

STRIDE = 4  # input columns per output column
BLANK = 0


class LineNet(nn.Module):
    """Conv stack (height 32 -> 1, width / 4), then 1-D convolutions along the line for context."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 48, 64), hidden: int = 96) -> None:
        super().__init__()
        self.args = {"widths": list(widths), "hidden": hidden}  # what a checkpoint needs to rebuild it
        w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            ConvBNAct(1, w1), nn.MaxPool2d(2),  # 16 x W/2
            ConvBNAct(w1, w2), nn.MaxPool2d(2),  # 8 x W/4
            ConvBNAct(w2, w3), nn.MaxPool2d((2, 1)),  # 4 x W/4
            ConvBNAct(w3, w4), nn.MaxPool2d((2, 1)),  # 2 x W/4
        )
        self.sequence = nn.Sequential(
            nn.Conv1d(2 * w4, hidden, 3, padding=1, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, 5, padding=2, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, 11, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(normalize(x))
        return self.sequence(f.flatten(1, 2)).log_softmax(1)


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    """`x` [..., W] zero-padded on the right to a multiple of STRIDE, so that the pooling keeps a line's last
    columns (a thin 1 at the end of a line is often all of them) in one more output column."""
    return torch.nn.functional.pad(x, (0, -x.shape[-1] % STRIDE))


def frame_count(widths: torch.Tensor) -> torch.Tensor:
    """Output columns that cover lines `widths` px wide once padded by `pad_to_stride`."""
    return (widths + STRIDE - 1) // STRIDE


def greedy_decode(logp: torch.Tensor, frames: torch.Tensor | None = None) -> list[list[tuple[int, int, int]]]:
    """Best-path CTC decoding of [B, 11, T]: per line, (digit, first column, last column) for each digit;
    `frames` [B] cuts each line's columns short (a batch padded on the right)."""
    out = []
    for k, best in enumerate(logp.argmax(1).tolist()):
        if frames is not None:
            best = best[:int(frames[k])]
        digits: list[tuple[int, int, int]] = []
        prev = BLANK
        for t, c in enumerate(best):
            if c != BLANK and c == prev:
                digits[-1] = (digits[-1][0], digits[-1][1], t)
            elif c != BLANK:
                digits.append((c - 1, t, t))
            prev = c
        out.append(digits)
    return out
