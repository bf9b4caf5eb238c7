"""The PyTorch tutorials' MNIST training program, as written there, for speed comparisons.

A map-style Dataset hands out one PIL image at a time, transforms turn it into a normalised
tensor, and a DataLoader (batch 64, shuffled, no worker processes on CPU, as pytorch/examples
runs it) collates batches. torchvision does not import beside this CPU torch, so its three
pieces used here (MNIST's __getitem__, ToTensor, Normalize) are written out as they behave.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TutorialMNIST(Dataset):
    """torchvision.datasets.MNIST: uint8 tensors in memory, a PIL image per sample, then the transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i].numpy(), mode="L")
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).float().div(255).unsqueeze(0)  # ToTensor
        return (x - 0.1307) / 0.3081, int(self.labels[i])  # Normalize((0.1307,), (0.3081,))


class TutorialLeNet(nn.Module):
    """The tutorials' LeNet-5 (ReLU, average pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))))


def tutorial_epochs(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> Iterator[float]:
    """Train as the tutorial does (Adam 1e-3, batch 64), one epoch per next(); yields each epoch's seconds.

    A generator, so a benchmark can interleave these epochs with its own and let both see the
    same machine conditions.
    """
    torch.manual_seed(seed)
    model = TutorialLeNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TutorialMNIST(images, labels), batch_size=64, shuffle=True)
    while True:
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        yield time.perf_counter() - t0
