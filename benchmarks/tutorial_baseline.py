"""The PyTorch tutorials' MNIST training program, as written there, for speed comparisons.

A map-style Dataset hands out one PIL image at a time, transforms turn it into a normalised
tensor, and a DataLoader (batch 64, shuffled, no worker processes on CPU, as pytorch/examples
runs it) collates batches. torchvision does not import beside this CPU torch, so the pieces used
here (MNIST's __getitem__, Compose, ToTensor, Normalize) are written out doing what torchvision's
do for a grayscale PIL image, step for step: the same checks, copies and tensor ops, so that the
baseline costs what the real program costs.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


def _api_usage(name: str) -> None:
    """torchvision logs the use of each public function once per call site (a cheap C call)."""
    torch._C._log_api_usage_once(f"torchvision.transforms.functional.{name}")


class ToTensor:
    """transforms.ToTensor on a PIL image: HxW uint8 -> 1xHxW float in [0, 1], via a copied array, a view
    to HxWxC, a permute to CxHxW made contiguous, then a cast and a division."""

    def __call__(self, pic: Image.Image) -> torch.Tensor:
        _api_usage("to_tensor")
        if not isinstance(pic, Image.Image):
            raise TypeError(f"pic should be a PIL Image, got {type(pic)}")
        dtype = torch.get_default_dtype()
        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
        img = img.permute((2, 0, 1)).contiguous()
        return img.to(dtype=dtype).div(255)


class Normalize(nn.Module):
    """transforms.Normalize (an nn.Module): checks, a copy (not in place), mean and std as tensors, a
    zero-std check, then subtract and divide."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = list(mean), list(std)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        _api_usage("normalize")
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 3 or not tensor.is_floating_point():
            raise TypeError("expected a float tensor image of size (C, H, W)")
        tensor = tensor.clone()
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
        if (std == 0).any():
            raise ValueError("std evaluated to zero, leading to division by zero")
        return tensor.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


class Compose:
    """transforms.Compose: each transform in turn."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


class TutorialMNIST(Dataset):
    """torchvision.datasets.MNIST: uint8 tensors in memory, a PIL image per sample, then the transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        self.data, self.targets, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        if self.transform is not None:
            img = self.transform(img)
        return img, target


TUTORIAL_TRANSFORM = Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])


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


def tutorial_epochs(images: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                    test: tuple[torch.Tensor, torch.Tensor] | None = None, device: str = "cpu",
                    ) -> Iterator[tuple[float, float]]:
    """Train as the tutorial does (Adam 1e-3, batch 64), one epoch per next(); yields each epoch's training
    seconds and the seconds of the test pass the tutorial runs after every epoch (batch 1000, accuracy and
    loss; 0.0 when no `test` split is given). On CUDA it runs as the tutorial does there: the model on the
    GPU, each batch moved to it, one loader worker process with pinned memory.

    A generator, so a benchmark can interleave these epochs with its own and let both see the
    same machine conditions.
    """
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = TutorialLeNet().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    kw = {"num_workers": 1, "pin_memory": True} if dev.type == "cuda" else {}
    loader = DataLoader(TutorialMNIST(images, labels, TUTORIAL_TRANSFORM), batch_size=64, shuffle=True, **kw)
    test_loader = DataLoader(TutorialMNIST(*test, TUTORIAL_TRANSFORM), batch_size=1000, **kw) if test else None
    while True:
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        _sync(dev)
        t1 = time.perf_counter()
        if test_loader is not None:
            _test(model, test_loader, dev)
        yield t1 - t0, time.perf_counter() - t1


def _sync(dev: torch.device) -> None:
    """Wait for queued GPU work, so that a host clock read after it times the work itself."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _test(model: nn.Module, loader: DataLoader, dev: torch.device) -> tuple[float, float]:
    """The tutorial's test(): summed loss and accuracy over the loader, without gradients."""
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss / n, correct / n
