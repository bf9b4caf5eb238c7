"""The IDX reader/writer: round trips, strict header and size checks, and the real MNIST shapes."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from digitrec.data.idx import read_idx, write_idx
from digitrec.errors import DigitrecError


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_round_trip_any_shape(tmp_path_factory: pytest.TempPathFactory, shape: list[int], seed: int) -> None:
    path = tmp_path_factory.mktemp("idx") / "x.idx"
    tensor = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    write_idx(path, tensor)
    back = read_idx(path)
    assert back.dtype == torch.uint8
    assert list(back.shape) == shape
    assert torch.equal(back, tensor)
    assert path.stat().st_size == 4 + 4 * len(shape) + tensor.numel()


def test_write_idx_header_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, torch.zeros(3, 258, dtype=torch.uint8))
    assert path.read_bytes()[:12] == b"\x00\x00\x08\x02" + struct.pack(">II", 3, 258)
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_write_idx_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError, match="uint8"):
        write_idx(tmp_path / "x", torch.zeros(2, 2, dtype=torch.float32))
    assert not (tmp_path / "x").exists()


def _good_bytes() -> bytes:
    return b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + bytes(range(24))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x01\x00\x08\x03" + _good_bytes()[4:], "magic"),
        (b"", "empty"),
        (b"\x00\x00\x0d\x03" + _good_bytes()[4:], "0x0d"),
        (b"\x00\x00\x08\x00", "dimensions"),
        (b"\x00\x00\x08\x05" + b"\x00" * 20, "dimensions"),
        (_good_bytes()[:10], "header"),
        (_good_bytes()[:-1], "truncated.*expected 40 bytes, got 39"),
        (_good_bytes() + b"\x00", "trailing.*expected 40 bytes, got 41"),
    ],
    ids=["bad-magic", "empty", "float32-dtype", "ndim-0", "ndim-5", "short-header", "truncated", "trailing"],
)
def test_bad_files_raise_naming_the_file(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DigitrecError, match=expected) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_good_bytes_parse(tmp_path: Path) -> None:
    path = tmp_path / "good"
    path.write_bytes(_good_bytes())
    assert torch.equal(read_idx(path), torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4))


def test_missing_file_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError, match="nope"):
        read_idx(tmp_path / "nope")


def test_real_mnist_shapes(mnist_dir: Path) -> None:
    expected = {
        "train-images-idx3-ubyte": (60000, 28, 28),
        "train-labels-idx1-ubyte": (60000,),
        "t10k-images-idx3-ubyte": (10000, 28, 28),
        "t10k-labels-idx1-ubyte": (10000,),
    }
    for name, shape in expected.items():
        tensor = read_idx(mnist_dir / name)
        assert tensor.dtype == torch.uint8
        assert tuple(tensor.shape) == shape
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte").numpy()
    assert set(np.unique(labels)) == set(range(10))
