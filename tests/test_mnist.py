"""MNIST loading and the seeded train/validation split, on real data and small synthetic sets."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from digitrec.data.fetch import sha256_file
from digitrec.data.idx import write_idx
from digitrec.data.mnist import Split, data_info, load_mnist, load_splits, split_train_val
from digitrec.errors import DigitrecError


def _indexed_split(n: int) -> Split:
    """A split whose image i encodes i in its first two pixels, so a subset reveals which samples it holds."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    idx = torch.arange(n)
    images[:, 0, 0] = (idx % 256).to(torch.uint8)
    images[:, 0, 1] = (idx // 256).to(torch.uint8)
    return Split(images, idx % 10)


def _ids(split: Split) -> list[int]:
    return (split.images[:, 0, 0].long() + 256 * split.images[:, 0, 1].long()).tolist()


def test_real_mnist_shapes_and_dtypes(mnist_dir: Path) -> None:
    data = load_mnist(mnist_dir, fetch=False)
    assert set(data) == {"train", "test"}
    for part, n in (("train", 60000), ("test", 10000)):
        split = data[part]
        assert len(split) == n
        assert split.images.dtype == torch.uint8 and tuple(split.images.shape) == (n, 28, 28)
        assert split.labels.dtype == torch.int64 and tuple(split.labels.shape) == (n,)
        assert torch.equal(split.labels.unique(), torch.arange(10))
        assert int(split.images.max()) == 255 and int(split.images.min()) == 0


def test_real_splits(mnist_dir: Path) -> None:
    splits = load_splits(mnist_dir, fetch=False)
    assert {k: len(v) for k, v in splits.items()} == {"train": 55000, "val": 5000, "test": 10000}
    again = load_splits(mnist_dir, fetch=False)
    assert torch.equal(splits["val"].images, again["val"].images)
    assert torch.equal(splits["val"].labels, again["val"].labels)
    assert len(splits["val"].labels.unique()) == 10


def test_split_sizes_disjoint_and_complete() -> None:
    train, val = split_train_val(_indexed_split(1000), val_size=100, seed=0)
    assert (len(train), len(val)) == (900, 100)
    assert set(_ids(train)).isdisjoint(_ids(val))
    assert sorted(_ids(train) + _ids(val)) == list(range(1000))
    assert torch.equal(val.labels, torch.tensor(_ids(val)) % 10)


def test_same_seed_same_split_different_seed_different() -> None:
    data = _indexed_split(1000)
    _, a = split_train_val(data, val_size=100, seed=0)
    _, b = split_train_val(data, val_size=100, seed=0)
    _, c = split_train_val(data, val_size=100, seed=1)
    assert _ids(a) == _ids(b)
    assert set(_ids(a)) != set(_ids(c))


def test_split_is_not_just_the_tail() -> None:
    _, val = split_train_val(_indexed_split(1000), val_size=100, seed=0)
    assert set(_ids(val)) != set(range(900, 1000)) and set(_ids(val)) != set(range(100))


def test_val_size_zero_gives_empty_val() -> None:
    train, val = split_train_val(_indexed_split(50), val_size=0)
    assert len(train) == 50 and len(val) == 0
    assert tuple(val.images.shape) == (0, 28, 28) and val.labels.dtype == torch.int64


@pytest.mark.parametrize("val_size", [50, 51, -1])
def test_bad_val_size_errors(val_size: int) -> None:
    with pytest.raises(DigitrecError, match=f"val_size={val_size}"):
        split_train_val(_indexed_split(50), val_size=val_size)


def test_split_to_and_len() -> None:
    split = _indexed_split(7)
    moved = split.to("cpu")
    assert len(moved) == 7 and moved.images.device.type == "cpu"
    assert torch.equal(moved.images, split.images)


def test_load_tiny_files(tiny_idx_files: tuple[Path, dict[str, str]]) -> None:
    data_dir, checksums = tiny_idx_files
    splits = load_splits(data_dir, val_size=10, fetch=False, files=checksums)
    assert {k: len(v) for k, v in splits.items()} == {"train": 40, "val": 10, "test": 20}
    assert splits["train"].labels.dtype == torch.int64


def test_missing_data_without_fetch_names_dir_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError) as info:
        load_mnist(tmp_path / "empty", fetch=False)
    message = str(info.value)
    assert str(tmp_path / "empty") in message and "digitrec data fetch" in message
    assert "train-images-idx3-ubyte (missing)" in message


def test_corrupt_data_without_fetch(tiny_idx_files: tuple[Path, dict[str, str]]) -> None:
    data_dir, checksums = tiny_idx_files
    with open(data_dir / "t10k-labels-idx1-ubyte", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(DigitrecError, match=r"t10k-labels-idx1-ubyte \(corrupt\)"):
        load_mnist(data_dir, fetch=False, files=checksums)


def _rewrite(data_dir: Path, checksums: dict[str, str], name: str, tensor: torch.Tensor) -> dict[str, str]:
    write_idx(data_dir / name, tensor)
    return {**checksums, name: sha256_file(data_dir / name)}


def test_label_out_of_range_rejected(tiny_idx_files: tuple[Path, dict[str, str]]) -> None:
    data_dir, checksums = tiny_idx_files
    labels = torch.full((50,), 3, dtype=torch.uint8)
    labels[7] = 10
    checksums = _rewrite(data_dir, checksums, "train-labels-idx1-ubyte", labels)
    with pytest.raises(DigitrecError, match="train-labels-idx1-ubyte.*0..9"):
        load_mnist(data_dir, fetch=False, files=checksums)


def test_count_mismatch_rejected(tiny_idx_files: tuple[Path, dict[str, str]]) -> None:
    data_dir, checksums = tiny_idx_files
    checksums = _rewrite(data_dir, checksums, "t10k-labels-idx1-ubyte", torch.zeros(19, dtype=torch.uint8))
    with pytest.raises(DigitrecError, match="expected 20 labels"):
        load_mnist(data_dir, fetch=False, files=checksums)


def test_data_info_real(mnist_dir: Path) -> None:
    info = data_info(mnist_dir)
    assert info["data_dir"] == str(mnist_dir)
    assert set(info["files"].values()) == {"ok"}
    assert info["sizes"] == {"train": 60000, "test": 10000}
    assert sum(info["class_counts"]["train"]) == 60000 and len(info["class_counts"]["test"]) == 10
    assert info["class_counts"]["test"][1] == 1135


def test_data_info_missing(tmp_path: Path) -> None:
    info = data_info(tmp_path)
    assert set(info["files"].values()) == {"missing"}
    assert "sizes" not in info and "class_counts" not in info
