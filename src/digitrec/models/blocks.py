"""Layers the models are composed of: conv-bn-act, depthwise-separable conv, residual block, CBAM."""
from __future__ import annotations

import torch
from torch import nn

from digitrec.card import MNIST_MEAN, MNIST_STD


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] images to MNIST's standardised scale; every model does this first."""
    return (x - MNIST_MEAN) / MNIST_STD


def conv(cin: int, cout: int, k: int = 3, stride: int = 1, separable: bool = False, padding: int | None = None
         ) -> nn.Module:
    """A bias-free k x k convolution (a BatchNorm follows), optionally depthwise-separable; padded to keep
    the size (k // 2) unless `padding` says otherwise."""
    pad = k // 2 if padding is None else padding
    if separable and cin > 1:
        return nn.Sequential(
            nn.Conv2d(cin, cin, k, stride, pad, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )
    return nn.Conv2d(cin, cout, k, stride, pad, bias=False)


class ConvBNAct(nn.Sequential):
    """Convolution, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, separable: bool = False,
                 padding: int | None = None) -> None:
        super().__init__(conv(cin, cout, k, stride, separable, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 8, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        mx = self.mlp(x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(avg + mx)
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-bn layers with a skip connection (1x1 projection when the width changes)."""

    def __init__(self, cin: int, cout: int, separable: bool = False, attention: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, separable=separable)
        self.conv2 = nn.Sequential(conv(cout, cout, separable=separable), nn.BatchNorm2d(cout))
        self.attention = CBAM(cout) if attention else nn.Identity()
        self.skip = (
            nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.attention(self.conv2(self.conv1(x))) + self.skip(x))
