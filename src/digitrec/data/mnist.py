"""MNIST as uint8 image tensors and int64 labels, plus the fixed, seeded train/validation split."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from digitrec.card import INPUT_SIZE, NUM_CLASSES
from digitrec.data.fetch import MNIST_FILES, Log, default_data_dir, fetch_mnist, verify_files
from digitrec.data.idx import read_idx
from digitrec.errors import DigitrecError

_PARTS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class Split:
    """One split: images uint8 [N, 28, 28] (white ink on black) and labels int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split with both tensors on `device` (e.g. to keep all of MNIST on the GPU)."""
        return Split(self.images.to(device), self.labels.to(device))


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    fetch: bool = True,
    log: Log = print,
    files: Mapping[str, str] = MNIST_FILES,
) -> dict[str, Split]:
    """Load the verified MNIST files as {"train", "test"} splits, fetching them first unless fetch=False."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if fetch:
        fetch_mnist(data_dir, files=files, log=log)
    else:
        status = verify_files(data_dir, files)
        bad = {name: state for name, state in status.items() if state != "ok"}
        if bad:
            listing = ", ".join(f"{name} ({state})" for name, state in bad.items())
            raise DigitrecError(
                f"MNIST data in {data_dir} is not usable: {listing}. "
                f"Run `digitrec data fetch --data-dir {data_dir}`, or point --data-dir / DIGITREC_DATA "
                "at a folder holding the four verified MNIST files."
            )
    return {part: _load_part(data_dir, images, labels) for part, (images, labels) in _PARTS.items()}


def _load_part(data_dir: Path, images_name: str, labels_name: str) -> Split:
    """Read one images/labels pair and check that shapes, counts and label range agree."""
    images = read_idx(data_dir / images_name)
    labels = read_idx(data_dir / labels_name)
    if images.dim() != 3 or tuple(images.shape[1:]) != (INPUT_SIZE, INPUT_SIZE):
        raise DigitrecError(
            f"{data_dir / images_name}: expected images of shape [N, {INPUT_SIZE}, {INPUT_SIZE}], "
            f"got {list(images.shape)}"
        )
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DigitrecError(
            f"{data_dir / labels_name}: expected {images.shape[0]} labels to match {images_name}, "
            f"got shape {list(labels.shape)}"
        )
    if labels.numel() and int(labels.max()) >= NUM_CLASSES:
        raise DigitrecError(
            f"{data_dir / labels_name}: labels must be 0..{NUM_CLASSES - 1}, found {int(labels.max())}"
        )
    return Split(images, labels.long())


def split_train_val(train: Split, val_size: int = 5000, seed: int = 0) -> tuple[Split, Split]:
    """Hold out val_size training samples, chosen by a fixed seeded permutation so every run agrees."""
    n = len(train)
    if not 0 <= val_size < n:
        raise DigitrecError(
            f"val_size={val_size} is invalid for a training set of {n} samples; expected 0 <= val_size < {n}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
    return (
        Split(train.images[train_idx], train.labels[train_idx]),
        Split(train.images[val_idx], train.labels[val_idx]),
    )


def load_splits(
    data_dir: str | Path | None = None,
    *,
    val_size: int = 5000,
    split_seed: int = 0,
    fetch: bool = True,
    log: Log = print,
    files: Mapping[str, str] = MNIST_FILES,
) -> dict[str, Split]:
    """Load MNIST as {"train", "val", "test"}, with val carved out of train by split_train_val."""
    data = load_mnist(data_dir, fetch=fetch, log=log, files=files)
    train, val = split_train_val(data["train"], val_size=val_size, seed=split_seed)
    return {"train": train, "val": val, "test": data["test"]}


def data_info(data_dir: str | Path | None = None, *, files: Mapping[str, str] = MNIST_FILES) -> dict[str, Any]:
    """Summarise the data folder for `digitrec data info`: file status and, if all ok, sizes and class counts."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    status = verify_files(data_dir, files)
    info: dict[str, Any] = {"data_dir": str(data_dir), "files": status}
    if all(state == "ok" for state in status.values()):
        data = {part: _load_part(data_dir, images, labels) for part, (images, labels) in _PARTS.items()}
        info["sizes"] = {part: len(split) for part, split in data.items()}
        info["class_counts"] = {
            part: torch.bincount(split.labels, minlength=NUM_CLASSES).tolist() for part, split in data.items()
        }
    return info
