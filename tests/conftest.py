"""Shared fixtures: the real MNIST files (fetched once per session) and tiny fake IDX files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from digitrec.data.fetch import default_data_dir, fetch_mnist, sha256_file
from digitrec.data.idx import write_idx

TINY_SIZES = {"train": 50, "t10k": 20}


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the four real, checksum-verified MNIST files (fetched if absent)."""
    return fetch_mnist(default_data_dir())


@pytest.fixture
def tiny_idx_files(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Small random MNIST-shaped IDX files under the real names; returns (dir, name -> sha256) for files=."""
    data_dir = tmp_path / "tiny_mnist"
    gen = torch.Generator().manual_seed(1234)
    for prefix, n in TINY_SIZES.items():
        images = torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=gen, dtype=torch.uint8)
        write_idx(data_dir / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data_dir / f"{prefix}-labels-idx1-ubyte", labels)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return data_dir, {name: sha256_file(data_dir / name) for name in names}


@pytest.fixture(scope="session")
def served_model(request, tmp_path_factory) -> str:
    """The shipped default model; a small model trained here when the package ships none."""
    from digitrec.config import build_config
    from digitrec.errors import DigitrecError
    from digitrec.read.recognizer import resolve_model
    from digitrec.training.loop import train

    try:
        resolve_model("default")
        return "default"
    except DigitrecError:
        pass
    cfg = build_config("default", dict(
        runs_dir=str(tmp_path_factory.mktemp("served_model")), name="run",
        data_dir=str(request.getfixturevalue("mnist_dir")), model="digitnet", train_subset=16384, val_size=500,
        batch_size=128, epochs=2, optimizer="adam", lr=2e-3, schedule="cosine", progress=False, tensorboard=False,
        augment={"enabled": True}))
    return train(cfg, log=lambda _m: None)["best_checkpoint"]
