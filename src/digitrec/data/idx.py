"""Read and write the IDX format MNIST ships in, without torchvision."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch

from digitrec.errors import DigitrecError
from digitrec.files import atomic_path

_UINT8 = 0x08
_DTYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
_MAX_NDIM = 4


def read_idx(path: str | Path) -> torch.Tensor:
    """Parse an IDX file into a uint8 tensor of its stored shape, checking the header and size exactly."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            header = f.read(4)
            if len(header) < 4 or header[:2] != b"\x00\x00":
                raise DigitrecError(
                    f"{path}: not an IDX file: expected magic bytes 00 00 <dtype> <ndim>, "
                    f"got {header.hex(' ') or 'an empty file'}"
                )
            dtype, ndim = header[2], header[3]
            if dtype != _UINT8:
                name = _DTYPE_NAMES.get(dtype, "unknown")
                raise DigitrecError(
                    f"{path}: IDX dtype byte 0x{dtype:02x} ({name}) is not supported; expected 0x08 (uint8)"
                )
            if not 1 <= ndim <= _MAX_NDIM:
                raise DigitrecError(f"{path}: IDX header says {ndim} dimensions; expected 1 to {_MAX_NDIM}")
            header_size = 4 + 4 * ndim
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DigitrecError(
                    f"{path}: IDX file truncated inside its header: expected at least {header_size} bytes, got {actual}"
                )
            dims = struct.unpack(f">{ndim}I", dims_raw)
            expected = header_size + int(np.prod(dims, dtype=np.int64))
            if actual != expected:
                kind = "truncated" if actual < expected else "has trailing bytes"
                raise DigitrecError(
                    f"{path}: IDX file {kind}: its header says shape {list(dims)}, so expected {expected} bytes, "
                    f"got {actual}; re-download it (digitrec data fetch)"
                )
            data = np.fromfile(f, dtype=np.uint8, count=expected - header_size)
    except OSError as e:
        raise DigitrecError(f"{path}: cannot read IDX file: {e.strerror or e}") from e
    return torch.from_numpy(data.reshape(dims))


def write_idx(path: str | Path, tensor: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    if tensor.dtype != torch.uint8:
        raise DigitrecError(f"{path}: write_idx writes uint8 tensors only, got {tensor.dtype}")
    if not 1 <= tensor.dim() <= _MAX_NDIM:
        raise DigitrecError(f"{path}: write_idx needs 1 to {_MAX_NDIM} dimensions, got shape {list(tensor.shape)}")
    array = np.ascontiguousarray(tensor.detach().cpu().numpy())
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, _UINT8, array.ndim, *array.shape)
    with atomic_path(path, ".part") as tmp:
        tmp.write_bytes(header + array.tobytes())
