"""LineNet: reads a whole line of digits at once (CNN over the line, CTC over its columns).

Input: ink [B, 1, 32, W] in [0, 1] (white on black, the line cut to its ink, 32 px high).
Output: log-probabilities [B, 11, W // 4] over blank (0) and digits 0-9 (1-10), one per 4-px column.
It tells how many digits a line holds and where, which is what segmenting touching digits needs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from digitrec.models.blocks import ConvBNAct, normalize

STRIDE = 4  # input columns per output column
BLANK = 0
BEAM = 8  # prefixes kept by beam_decode
PRUNE = -7.0  # beam_decode tries no class whose log-probability in a column is below this


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


class LineMixture(nn.Module):
    """Several LineNets read as one: the log of the mean of their column probabilities. Readers fine-tuned from
    one another put their CTC peaks on the same columns, so the mixture keeps each one's strengths (one trained
    on the evaluation set's style, one on looser writing) where averaging independent readers blurs them."""

    def __init__(self, members: list[LineNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("LineMixture needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(torch.stack([m(x) for m in self.members]), 0) - math.log(len(self.members))


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


def beam_decode(logp: np.ndarray, beam: int = BEAM, floor: float = PRUNE) -> list[int]:
    """The likeliest digit string (digits 0-9) of one line's column log-probabilities [T, 11] by CTC prefix
    beam search: a string's probability sums over all its alignments, where best-path decoding takes the one
    likeliest alignment and so can count a digit too many or too few. Classes under `floor` are not tried."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix: (ends in blank, not)
    likely = (logp[:, 1:] > floor).tolist()
    for frame, digits in zip(logp.tolist(), likely):
        tried = [c + 1 for c, ok in enumerate(digits) if ok]
        if not tried:  # only the blank: every prefix now ends in a blank, and their order stays
            beams = {prefix: (_logadd(b, d) + frame[BLANK], -math.inf) for prefix, (b, d) in beams.items()}
            continue
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_digit) in beams.items():
            total = _logadd(p_blank, p_digit)
            entry = grown.setdefault(prefix, [-math.inf, -math.inf])
            entry[0] = _logadd(entry[0], total + frame[BLANK])
            for c in tried:
                longer = grown.setdefault(prefix + (c,), [-math.inf, -math.inf])
                if prefix and prefix[-1] == c:  # a repeat needs a blank between; else it extends the same digit
                    longer[1] = _logadd(longer[1], p_blank + frame[c])
                    entry[1] = _logadd(entry[1], p_digit + frame[c])
                else:
                    longer[1] = _logadd(longer[1], total + frame[c])
        ranked = sorted(grown.items(), key=lambda kv: -_logadd(*kv[1]))[:beam]
        beams = {prefix: (b, d) for prefix, (b, d) in ranked}
    best = max(beams.items(), key=lambda kv: _logadd(*kv[1]))[0]
    return [c - 1 for c in best]


def _logadd(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) of two floats, -inf allowed."""
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def ctc_loglik(logp: np.ndarray, digits: list[int] | str) -> float:
    """log P(digits | line) under CTC: every alignment of the string to the columns [T, 11] summed."""
    if not len(digits):
        return float(logp[:, BLANK].sum())
    target = torch.tensor([[int(d) + 1 for d in digits]])
    lp = torch.from_numpy(np.ascontiguousarray(logp, np.float32))[:, None]
    loss = torch.nn.functional.ctc_loss(lp, target, torch.tensor([lp.shape[0]]), torch.tensor([len(digits)]),
                                        blank=BLANK, reduction="sum")
    return -float(loss)
