"""Decode any image (path, bytes, PIL image, numpy array) to grayscale as it looks, 1.0 = white paper.

EXIF orientation is applied, alpha is composited onto white (or used as the ink itself when the colour
channels carry no contrast, as in a white-on-transparent canvas), and huge inputs are refused before they
are decoded, or shrunk to a working size while they are decoded.
"""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitrec.errors import DigitrecError

MAX_PIXELS = 40_000_000  # decompression-bomb guard: refuse anything larger instead of decoding it
WORK_SIDE = 1000  # preprocessing works on at most this many pixels along the longest side...
STRIP = 8  # ...but a strip (a long number cut tight) keeps WORK_SIDE / STRIP px across, up to STRIP times longer
FLOAT_OVER = 2.0  # float images whose top is at most this are [0, 1] (overshot), above it 0-255
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, the weights Pillow's convert("L") uses
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass
class Decoded:
    """A decoded image: gray float32 HxW in [0, 1] (1 = white), the input's (height, width) after EXIF, and
    whether it was transparent anywhere (a drawing canvas's export, not a photo or scan of paper)."""

    gray: np.ndarray
    input_shape: tuple[int, int]
    transparent: bool = False


def load_image(source: Any, name: str | None = None, *, max_side: int | None = None) -> np.ndarray:
    """Grayscale float32 HxW in [0, 1] (1 = white) of `source`, shrunk to the working size for `max_side`."""
    return decode(source, name, max_side=max_side).gray


def decode(source: Any, name: str | None = None, *, max_side: int | None = None) -> Decoded:
    """Decode a path, bytes, PIL image or numpy array; `name` labels the input in error messages."""
    if isinstance(source, Image.Image):
        return _from_pil(source, name or "image", max_side)
    if isinstance(source, str) and source.startswith("data:"):
        return _from_data_url(source, name or "data URL", max_side)
    if isinstance(source, (str, Path)):
        return _from_path(Path(source), name or _short(str(source)), max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image bytes"
        if len(source) == 0:
            raise DigitrecError(f"{label}: empty input (0 bytes); expected an image file's contents")
        return _open(io.BytesIO(bytes(source)), label, max_side)
    if hasattr(source, "detach") and hasattr(source, "cpu"):  # a torch tensor, maybe on a GPU or needing grad
        source = source.detach().cpu()
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return _from_array(np.asarray(source), name or "array", max_side)
    raise DigitrecError(f"{name or 'input'}: unsupported type {type(source).__name__}; "
                        "expected a path, bytes, a PIL image or a numpy array")


def _short(text: str, keep: int = 80) -> str:
    """A label for an input named by a long string: its start and its length."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


def _from_path(path: Path, label: str, max_side: int | None) -> Decoded:
    try:
        if not path.exists():
            raise DigitrecError(f"{label}: no such file")
        if not path.is_file():
            raise DigitrecError(f"{label}: not a file; expected an image file")
        if path.stat().st_size == 0:
            raise DigitrecError(f"{label}: empty file (0 bytes); expected an image")
        with open(path, "rb") as f:
            return _open(f, label, max_side)
    except OSError as e:  # a name too long to be a path, no permission, an I/O error
        raise DigitrecError(f"{label}: cannot read the file ({e.strerror or e}); expected the path of an image "
                            "file (pass an image's contents as bytes)") from None


def _from_data_url(url: str, label: str, max_side: int | None) -> Decoded:
    """A 'data:image/png;base64,...' string, as a browser canvas's toDataURL() gives."""
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise DigitrecError(f"{label}: a data URL must be 'data:<type>;base64,<data>'")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as e:
        raise DigitrecError(f"{label}: the data URL's base64 is not valid ({e})") from None
    if not data:
        raise DigitrecError(f"{label}: empty input (0 bytes); expected an image file's contents")
    return _open(io.BytesIO(data), label, max_side)


def _open(stream: Any, label: str, max_side: int | None) -> Decoded:
    try:
        with Image.open(stream) as img:
            return _from_pil(img, label, max_side, owned=True)
    except UnidentifiedImageError:
        raise DigitrecError(f"{label}: not an image (Pillow could not identify it); "
                            "expected PNG, JPEG, BMP, TIFF, WebP or GIF") from None
    except Image.DecompressionBombError as e:
        raise DigitrecError(f"{label}: too many pixels ({e}); the limit is "
                            f"{MAX_PIXELS // 1_000_000} megapixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # a header Pillow recognised, then could not parse
        raise DigitrecError(f"{label}: truncated or corrupt image ({e})") from None


def _from_pil(img: Image.Image, label: str, max_side: int | None, owned: bool = False) -> Decoded:
    """EXIF-rotate, size-check, shrink and convert to gray; a JPEG we opened (`owned`) is shrunk while decoding."""
    w, h = img.size
    _check_size(w, h, label)
    if _closed(img):
        raise DigitrecError(f"{label}: the PIL image was closed before its pixels were loaded; call .load() "
                            "or .copy() on it inside its `with` block")
    try:
        if owned and img.format == "JPEG":
            # DCT-domain scaling (1/2, 1/4, 1/8) and luma-only decoding: a 12 MP photo decodes in a few ms
            f = _fit((h, w), max_side)[1] / w if max_side else 1.0
            img.draft("L" if img.mode == "RGB" else img.mode, (max(1, int(img.size[0] * f)), max(1, int(img.size[1] * f))))
        img.load()
        orientation = img.getexif().get(0x0112, 1)  # read once loaded: a TIFF may have been turned upright
        if orientation in _ROTATED:
            w, h = h, w
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode in ("La", "LAB", "HSV"):  # modes Pillow cannot turn to gray in one step
            img = img.convert("LA" if img.mode == "La" else "RGB")
        gray, alpha = _pil_to_arrays(img, max_side)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise _unreadable(img, label, e) from None
    return Decoded(_flatten_alpha(gray, alpha), (h, w), _transparent(alpha))


def _unreadable(img: Image.Image, label: str, error: Exception) -> DigitrecError:
    """The error for an image Pillow recognised but could not load: corrupt, or (EPS) a renderer missing."""
    if img.format == "EPS" and "ghostscript" in str(error).lower():
        return DigitrecError(f"{label}: EPS needs Ghostscript to be drawn, and the `gs` program was not found; "
                             "install Ghostscript (Debian: apt install ghostscript) or convert the file to PNG")
    return DigitrecError(f"{label}: truncated or corrupt image ({error})")


def _closed(img: Image.Image) -> bool:
    """Whether a PIL image was closed with no pixels to give: its file is gone and nothing was loaded from it."""
    if getattr(img, "fp", True) is not None:
        return False
    core = img.__dict__.get("_im", img.__dict__.get("im"))
    return core is None or type(core).__name__ == "DeferredError"


def _pil_to_arrays(img: Image.Image, max_side: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Gray (and alpha, if any) float32 in [0, 1], shrunk to the working size for `max_side` (see `_fit`)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        img = img.convert("LA") if img.mode in ("RGBA", "LA") else img.convert("RGBA").convert("LA")
    elif img.mode.startswith("I") or img.mode == "F":
        return _shrink(_scale_values(np.asarray(img)), max_side), None
    elif img.mode != "L":
        img = img.convert("L")
    if _shrinks(img.size[::-1], max_side):
        img = img.resize(_fit(img.size[::-1], max_side)[::-1], Image.Resampling.BOX)
    arr = np.asarray(img)
    scale = np.float32(1 / 255)
    if has_alpha:
        return arr[..., 0] * scale, arr[..., 1] * scale
    return arr * scale, None


def _from_array(arr: np.ndarray, label: str, max_side: int | None) -> Decoded:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays of any real dtype (float in [0, 1] or [0, 255])."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise DigitrecError(f"{label}: unsupported array shape {list(arr.shape)}; "
                            "expected HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA)")
    if arr.dtype.kind not in "buif":
        raise DigitrecError(f"{label}: unsupported array dtype {arr.dtype}; expected uint8, uint16, bool or float")
    h, w = arr.shape[:2]
    _check_size(w, h, label)
    if arr.dtype == np.uint8 and _shrinks((h, w), max_side):  # a photo's pixels: Pillow shrinks them fast
        mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
        return _from_pil(Image.fromarray(np.ascontiguousarray(arr), mode), label, max_side)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DigitrecError(f"{label}: the array contains NaN or infinite values")
    values = _scale_values(arr)
    alpha = None
    if values.ndim == 3:
        alpha = values[..., 3] if values.shape[2] == 4 else None
        values = values[..., :3] @ _LUMA
    gray = _shrink(values, max_side)
    alpha = _shrink(alpha, max_side) if alpha is not None else None
    return Decoded(_flatten_alpha(gray, alpha), (h, w), _transparent(alpha))


def _scale_values(arr: np.ndarray) -> np.ndarray:
    """Any real array to float32 in [0, 1]. Integers by the fewest bits that hold them (8, or 10, 12, 16 ... for
    a deep scan); floats as [0, 1] (top at most FLOAT_OVER) or [0, 255] by their top; values below zero (a
    standardised tensor, such as MNIST's (x - 0.1307) / 0.3081) stretched from their own least to their greatest."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    values = arr.astype(np.float32)
    low, top = float(values.min()), float(values.max())
    if low < 0:
        return (values - low) / max(top - low, 1e-6)
    if arr.dtype.kind in "ui":
        return np.clip(values / (255.0 if top <= 255 else float(2 ** int(np.ceil(np.log2(top + 1))) - 1)), 0, 1)
    if top <= FLOAT_OVER:  # [0, 1], perhaps overshot by a resize (1.03) or brightened past 1: not a black 0-255 page
        return np.clip(values, 0, 1)
    return np.clip(values / (255.0 if top <= 255.0 else top), 0, 1)


def _transparent(alpha: np.ndarray | None) -> bool:
    """Whether any of the image is see-through: a drawing, not a photographed page (nor a page saved with an
    opaque alpha channel)."""
    return alpha is not None and float(alpha.min()) <= 0.99


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Composite onto white; when that leaves (almost) no contrast but alpha has some, alpha is the ink."""
    if not _transparent(alpha):
        return np.ascontiguousarray(gray, np.float32)
    composite = alpha * gray + (1.0 - alpha)
    alpha_contrast = float(alpha.max() - alpha.min())
    if float(composite.max() - composite.min()) < 0.5 * alpha_contrast:
        return (1.0 - alpha).astype(np.float32)
    return composite.astype(np.float32)


def _shrink(values: np.ndarray, max_side: int | None) -> np.ndarray:
    """Area-average a 2-D float array down to its working size (see `_fit`)."""
    if not _shrinks(values.shape, max_side):
        return values
    h, w = _fit(values.shape, max_side)
    return np.asarray(Image.fromarray(values.astype(np.float32)).resize((w, h), Image.Resampling.BOX))


def _shrinks(shape: tuple[int, int], max_side: int | None) -> bool:
    """Whether an image of `shape` (h, w) is larger than its working size."""
    return bool(max_side) and _fit(shape, max_side) != tuple(shape)


def _fit(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The working size (h, w) of an image of `shape`: the longest side shrunk to `max_side`, unless that
    leaves the short side under max_side / STRIP px (a long strip of digits would shrink to specks); then the
    short side keeps that many, the long side at most STRIP * max_side. Never larger than the image."""
    long, short = max(shape), min(shape)
    f = min(1.0, max(max_side / long, min(max_side / STRIP / short, STRIP * max_side / long)))
    return max(1, round(shape[0] * f)), max(1, round(shape[1] * f))


def _check_size(w: int, h: int, label: str) -> None:
    if w * h > MAX_PIXELS:
        raise DigitrecError(f"{label}: {w}x{h} is {w * h / 1e6:.0f} megapixels, more than the "
                            f"{MAX_PIXELS // 1_000_000} megapixel limit; downscale it first")
    if w == 0 or h == 0:
        raise DigitrecError(f"{label}: the image is empty ({w}x{h})")
