"""LeNet-5 as the PyTorch tutorials write it (ReLU and average pooling)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from digitrec.models.blocks import normalize


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2, avg-pool, conv 16@5x5, avg-pool, fc 120-84-10: 61,706 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(normalize(x))), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
