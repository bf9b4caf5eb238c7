"""Several networks of the same task read as one: their log-probabilities averaged."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class GeometricEnsemble(nn.Module):
    """The mean of its members' log-softmax outputs: a softmax of it is their normalised geometric mean (for
    two classes, the sigmoid of the members' mean logit), which is confident only where all members are."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("GeometricEnsemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).log_softmax(1) for m in self.members]).mean(0)
