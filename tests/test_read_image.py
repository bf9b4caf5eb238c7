"""Decoding: every input mode and format, EXIF rotation, alpha, and clear errors for bad or huge inputs."""
from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from digitrec.errors import DigitrecError
from digitrec.read.image import MAX_PIXELS, WORK_SIDE, decode, load_image
from digitrec.read.normalize import preprocess


def _digit_like(w: int = 60, h: int = 40) -> Image.Image:
    """A dark bar in the top-left quarter of a white image: asymmetric, so rotations and flips show."""
    im = Image.new("L", (w, h), 255)
    ImageDraw.Draw(im).rectangle((5, 5, w // 2, h // 4), fill=0)
    return im


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels but carries almost no data: a decompression-bomb probe."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


REFERENCE = np.asarray(_digit_like(), np.float32) / 255


@pytest.mark.parametrize("mode", ["str", "path", "bytes", "bytearray", "pil", "gray_u8", "rgb_u8", "rgba_u8",
                                  "gray_float01", "gray_float255", "gray_bool", "gray_u16", "gray_u12",
                                  "standardised", "tensor_grad", "data_url", "pil_La", "pil_LAB"])
def test_every_input_mode_decodes_to_the_same_gray(mode: str, tmp_path: Path) -> None:
    im = _digit_like()
    path = tmp_path / "digit.png"
    im.save(path)
    arr = np.asarray(im)
    source = {
        "str": str(path), "path": path, "bytes": path.read_bytes(), "bytearray": bytearray(path.read_bytes()),
        "pil": im, "gray_u8": arr, "rgb_u8": np.stack([arr] * 3, -1),
        "rgba_u8": np.dstack([arr, arr, arr, np.full_like(arr, 255)]),
        "gray_float01": arr / 255.0, "gray_float255": arr.astype(np.float32), "gray_bool": arr > 127,
        "gray_u16": arr.astype(np.uint16) * 257, "hxwx1": arr[..., None],
        "gray_u12": (arr.astype(np.uint32) * 4095 // 255).astype(np.uint16),  # a 12-bit scan
        "standardised": (arr / 255.0 - 0.1307) / 0.3081,  # as a training pipeline normalises
        "tensor_grad": torch.tensor(arr / 255.0, requires_grad=True),
        "data_url": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode(),  # canvas.toDataURL()
        "pil_La": im.convert("LA").convert("La"), "pil_LAB": im.convert("RGB").convert("LAB"),
    }.get(mode, arr[..., None])
    gray = load_image(source)
    assert gray.dtype == np.float32 and gray.shape == (40, 60)
    np.testing.assert_allclose(gray, REFERENCE, atol=2 / 255 if mode == "pil_LAB" else 1 / 255)


@pytest.mark.parametrize("fmt,tol", [("PNG", 0.0), ("JPEG", 0.08), ("BMP", 0.0), ("TIFF", 0.0), ("WEBP", 0.08),
                                     ("GIF", 0.0)])
def test_every_format_decodes(fmt: str, tol: float) -> None:
    data = _encode(_digit_like(), fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    gray = load_image(data)
    assert gray.shape == (40, 60)
    assert np.abs(gray - REFERENCE).mean() <= tol + 1e-6


def test_gif_reads_the_first_frame() -> None:
    first, second = _digit_like(), Image.new("L", (60, 40), 0)
    data = _encode(first.convert("P"), "GIF", save_all=True, append_images=[second.convert("P")], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    np.testing.assert_allclose(load_image(data), REFERENCE, atol=1 / 255)


def test_exif_orientation_is_applied() -> None:
    im = _digit_like()  # bar at the top-left of a 60x40 landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": viewers show it as 40x60 portrait
    data = _encode(im, "JPEG", quality=95, exif=exif)
    gray = load_image(data)
    assert gray.shape == (60, 40)
    expected = np.asarray(im.transpose(Image.Transpose.ROTATE_270), np.float32) / 255
    assert np.abs(gray - expected).mean() < 0.05
    assert decode(data).input_shape == (60, 40)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "PNG", "WEBP"])
def test_exif_rotated_inputs_keep_their_upright_shape_whatever_the_format(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Pillow turns a TIFF upright as it loads it, the others are turned here: once either way
    data = _encode(_digit_like().convert("RGB"), fmt, exif=exif)
    decoded = decode(data)
    assert decoded.input_shape == (60, 40) and decoded.gray.shape == (60, 40)


def test_transparent_canvas_with_black_strokes_composites_onto_white() -> None:
    rgba = np.zeros((50, 50, 4), np.uint8)  # what a canvas exports: (0, 0, 0, 0) where nothing was drawn
    rgba[10:40, 20:26] = (0, 0, 0, 255)
    gray = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert gray[25, 22] == 0.0 and gray[5, 5] == 1.0


def test_transparent_canvas_with_white_strokes_uses_alpha_as_ink() -> None:
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[10:40, 20:26, 3] = 255  # white strokes, transparent white background: no contrast in colour
    ink, mask = preprocess(Image.fromarray(rgba, "RGBA"))
    assert mask[10:40, 20:26].all() and mask.sum() == 30 * 6
    assert ink[25, 22] == pytest.approx(1.0)


def test_large_photo_is_decoded_at_working_size() -> None:
    rng = np.random.default_rng(0)
    photo = (200 + rng.integers(0, 20, (3000, 4000), dtype=np.uint8)).astype(np.uint8)
    photo[1000:2000, 1500:1700] = 20
    data = _encode(Image.fromarray(photo).convert("RGB"), "JPEG", quality=90)
    decoded = decode(data, max_side=WORK_SIDE)
    assert decoded.input_shape == (3000, 4000)
    assert max(decoded.gray.shape) == WORK_SIDE and decoded.gray.shape == (750, 1000)


@pytest.mark.parametrize("shape, working", [
    ((3000, 4000), (750, 1000)),  # a photo: the longest side to WORK_SIDE
    ((72, 3072), (72, 3072)),  # a strip of 40 digits: kept whole (at 1000 px its digits were 23 px high)
    ((20, 10000), (16, 8000)),  # a strip 500 times longer than high: at most 8,000 px long, still 16 px high
    ((6000, 1000), (1000, 167)),  # a tall page: shrunk by its long side as before
    ((6000, 400), (1875, 125)),  # a tall narrow strip keeps WORK_SIDE / 8 px across, as a long one does
])
def test_the_working_size_keeps_a_long_strip_legible(shape: tuple[int, int], working: tuple[int, int]) -> None:
    page = np.full((*shape, 3), 240, np.uint8)
    assert decode(page, max_side=WORK_SIDE).gray.shape == working
    encoded = decode(_encode(Image.fromarray(page), "JPEG"), max_side=WORK_SIDE)
    assert encoded.gray.shape == working and encoded.input_shape == shape


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_a_large_uint8_array_decodes_as_the_same_picture_would(channels: int) -> None:
    photo = np.full((1500, 2400, channels), 230, np.uint8)
    photo[300:1200, 900:1100] = 20
    if channels == 4:
        photo[..., 3] = 0
        photo[300:1200, 900:1100, 3] = 255  # a canvas export: transparent but for the stroke
    array = photo[..., 0] if channels == 1 else photo
    from_array, from_pil = decode(array, max_side=WORK_SIDE), decode(Image.fromarray(array), max_side=WORK_SIDE)
    assert from_array.input_shape == (1500, 2400) and from_array.gray.shape == (625, 1000)
    assert from_array.transparent == (channels == 4) == from_pil.transparent
    np.testing.assert_allclose(from_array.gray, from_pil.gray, atol=1 / 255)


@pytest.mark.parametrize("source,match", [
    (b"", "empty input"),
    (b"hello, this is text and not an image\n", "not an image"),
    (_encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)), "PNG")[:2000],
     "truncated or corrupt"),
    (_png_header(30000, 30000), "too many pixels|megapixel"),
    (_png_header(7000, 7000), "megapixel limit"),
    (np.zeros((4, 4, 2)), "unsupported array shape"),
    (np.zeros((2, 3, 4, 3)), "unsupported array shape"),
    (np.zeros((0, 5)), "unsupported array shape"),
    (np.full((4, 4), np.nan), "NaN"),
    (12345, "unsupported type"),
    (_encode(_digit_like().convert("RGB"), "JPEG")[:40], "truncated or corrupt"),
    (_encode(_digit_like(), "WEBP")[:-20], "truncated or corrupt"),
    (b"BM" + b"\xff" * 60, "truncated or corrupt|not an image"),
    ("data:image/png;base64,%%%", "base64 is not valid"),
    ("data:image/png,rawdata", "must be 'data:<type>;base64,<data>'"),
])
def test_bad_inputs_raise_a_clear_error(source, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(DigitrecError, match=match):
        decode(source, "upload.png")
    assert time.perf_counter() - start < 1.0  # never a hang, even for a 900-megapixel header


def test_errors_name_the_input(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(DigitrecError, match="notes.txt: not an image"):
        decode(text)
    with pytest.raises(DigitrecError, match="missing.png: no such file"):
        decode(tmp_path / "missing.png")
    with pytest.raises(DigitrecError, match="empty file"):
        (tmp_path / "empty.png").write_bytes(b"")
        decode(tmp_path / "empty.png")
    with pytest.raises(DigitrecError, match="not a file"):
        decode(tmp_path)
    with pytest.raises(DigitrecError, match="^upload: empty input"):
        decode(b"", name="upload")
    with pytest.raises(DigitrecError, match=r"^x{80}\.\.\. \(300 characters\): cannot read the file"):
        decode("x" * 300)  # too long to be a path, and too long to repeat whole


def test_pixel_limit_applies_to_arrays_too() -> None:
    side = int(MAX_PIXELS ** 0.5) + 1
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (side, side), (0, 0))  # no memory used
    with pytest.raises(DigitrecError, match="megapixel limit"):
        decode(big)


def test_a_pil_image_closed_before_loading_is_a_clear_error(tmp_path: Path) -> None:
    _digit_like().save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        pass
    with pytest.raises(DigitrecError, match="closed before its pixels were loaded; call .load"):
        decode(im)
    with Image.open(tmp_path / "d.png") as loaded:
        loaded.load()
    np.testing.assert_allclose(load_image(loaded), REFERENCE, atol=1 / 255)  # loaded in time: still readable


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (500, 1), (2, 2), (2, 300)])
def test_images_a_pixel_or_two_thin_are_blank_not_an_error(shape: tuple[int, int]) -> None:
    ink, mask = preprocess(np.zeros(shape, np.uint8))
    assert ink.shape == shape and not mask.any()


def test_eps_says_it_needs_ghostscript_when_there_is_none(tmp_path: Path, monkeypatch) -> None:
    # Pillow draws EPS through Ghostscript; without it the file was called "truncated or corrupt".
    import shutil

    from PIL import EpsImagePlugin

    page = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(page).ellipse((20, 20, 80, 80), outline=0, width=8)
    path = tmp_path / "ring.eps"
    page.save(path, "EPS")
    if shutil.which("gs"):
        assert decode(path).gray.shape == (100, 100)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", False)  # as on a machine without Ghostscript
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: False)
    with pytest.raises(DigitrecError, match=r"ring\.eps: EPS needs Ghostscript.*convert the file to PNG"):
        decode(path)


@pytest.mark.parametrize("top", [1.03, 1.5, 2.0])
def test_a_float_image_a_little_past_one_is_still_zero_to_one(top: float) -> None:
    # A [0, 1] image that a bicubic resize overshot (1.03) or a brightening pushed past 1 was taken for 0-255
    # and divided by 255: a black page, read as blank.
    image = REFERENCE.copy()
    image[0, 0] = top
    gray = load_image(image)
    assert gray[0, 0] == 1.0
    np.testing.assert_allclose(gray.ravel()[1:], REFERENCE.ravel()[1:], atol=1e-6)
    np.testing.assert_allclose(load_image(REFERENCE * 255), REFERENCE, atol=1e-6)  # 0-255 floats as before
