"""DigitNet: our own BatchNorm/residual CNN; attention and separable convs are options, not copies."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from digitrec.models.blocks import ConvBNAct, ResidualBlock, normalize


class DigitNet(nn.Module):
    """A stem at 28x28, then residual stages at 14x14 and 7x7, global max-pool, linear head.

    The stem pools at once: full-resolution layers dominate the cost on CPU, and a 28x28 digit
    keeps its strokes at 14x14.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64),
        depth: int = 1,
        attention: bool = False,
        separable: bool = False,
        dropout: float = 0.0,
        classes: int = 10,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1 or depth < 1 or not 0 <= dropout < 1 or classes < 2:
            raise ValueError("DigitNet needs widths of three positive ints, depth >= 1, dropout in [0, 1) "
                             "and classes >= 2")
        w0, w1, w2 = (int(w) for w in widths)
        self.stem = nn.Sequential(ConvBNAct(1, w0), nn.MaxPool2d(2))
        self.stage1 = self._stage(w0, w1, depth, attention, separable)
        self.pool = nn.MaxPool2d(2)
        self.stage2 = self._stage(w1, w2, depth, attention, separable)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(w2, int(classes)))
        # Residual branches start as identities (zero last-BN scale), which keeps the first
        # steps at a high learning rate stable.
        for block in self.modules():
            if isinstance(block, ResidualBlock):
                nn.init.zeros_(block.conv2[1].weight)

    @staticmethod
    def _stage(cin: int, cout: int, depth: int, attention: bool, separable: bool) -> nn.Sequential:
        blocks = [ResidualBlock(cin if i == 0 else cout, cout, separable, attention) for i in range(depth)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(normalize(x))
        x = self.stage2(self.pool(self.stage1(x)))
        return self.head(x)
