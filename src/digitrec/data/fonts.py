"""Digits rendered from font files and framed as MNIST frames a digit: extra training data for the shapes
MNIST's writers seldom used (a 1 with a flag and a foot, a closed 4, a felt-tip 8).

Each (font, digit) is drawn several times at random sizes, slants and pen weights (and, when asked, some as
sketches: the strokes' outline alone, hollow or hatched, as outline and sketch fonts or a double-line pen
draw them), then cropped and framed
by `digitrec.data.frame.crop_to_mnist`, the very recipe the reader applies to the ink it finds, so the
model is trained on what it will later be shown. The result is a `Split` of uint8 tensors like MNIST's,
made once when training starts (a few seconds); the per-batch augmentation then varies it further.
"""
from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from digitrec.data.frame import crop_to_mnist
from digitrec.data.mnist import Split
from digitrec.errors import DigitrecError

FONT_SUFFIXES = (".ttf", ".otf")
_SIZES = (36, 110)  # glyph height range in pixels before framing
_SLANT = 0.25  # max horizontal shear (x += slant * y), either way
_ROTATE = 6.0  # max rotation in degrees


def resolve_fonts(patterns: Sequence[str]) -> list[Path]:
    """The font files named by `patterns` (files, folders searched recursively, or glob patterns), sorted and
    without duplicates; a pattern that names no font file is an error that says so."""
    found: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            hits = [p for p in path.rglob("*") if p.suffix.lower() in FONT_SUFFIXES]
        elif path.is_file():
            hits = [path]
        else:
            hits = [Path(p) for p in glob.glob(str(path), recursive=True)]
        hits = [p for p in hits if p.is_file() and p.suffix.lower() in FONT_SUFFIXES]
        if not hits:
            raise DigitrecError(f"fonts: {pattern!r} names no .ttf or .otf file (a font file, a folder of them, "
                                "or a glob pattern such as /usr/share/fonts/truetype/dejavu/*.ttf)")
        found.update(p.resolve() for p in hits)
    return sorted(found)


def render_font_digits(
    fonts: Sequence[str | Path], variants: int, seed: int = 0, log: Callable[[str], None] = print,
    sketch: float = 0.0,
) -> Split:
    """`variants` images of each digit 0-9 from each font, as a Split of uint8 [N, 28, 28] (white ink on
    black) and labels, a `sketch` fraction of them drawn as sketches; fonts without real digit glyphs (all
    digits drawn the same, or nothing) are skipped with a note."""
    rng = np.random.default_rng(seed)
    images, labels, skipped = [], [], []
    for path in fonts:
        if not has_digits(path):
            skipped.append(Path(path).name)
            continue
        for digit in range(10):
            for _ in range(variants):
                images.append(_variant(str(path), str(digit), rng, sketch))
                labels.append(digit)
    if skipped:
        log(f"fonts: skipped {len(skipped)} without digit glyphs: {', '.join(skipped)}")
    if not images:
        raise DigitrecError("fonts: none of the fonts given has digit glyphs; nothing to train on")
    stack = np.rint(np.stack(images) * 255).astype(np.uint8)
    return Split(torch.from_numpy(stack), torch.tensor(labels, dtype=torch.int64))


def render_font_glyphs(
    fonts: Sequence[str | Path], chars: str, variants: int, seed: int = 0, sketch: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`variants` images of each of `chars` from each font, framed as MNIST digits (uint8 [N, 28, 28], white
    ink on black), and the index into `fonts` of each image's font. A character the font does not draw (its
    'missing glyph' box, or nothing) is left out, so no font contributes boxes."""
    rng = np.random.default_rng(seed)
    images, owners = [], []
    for index, path in enumerate(fonts):
        for char in _drawn(path, chars):
            for _ in range(variants):
                images.append(_variant(str(path), char, rng, sketch))
                owners.append(index)
    if not images:
        raise DigitrecError(f"fonts: none of the {len(fonts)} fonts given draws any of {chars!r}")
    stack = np.rint(np.stack(images) * 255).astype(np.uint8)
    return torch.from_numpy(stack), torch.tensor(owners, dtype=torch.int64)


def _drawn(path: str | Path, chars: str) -> str:
    """The characters of `chars` that the font really draws: not empty, not its 'missing glyph' shape."""
    try:
        font = ImageFont.truetype(str(path), 48)
    except OSError as e:
        raise DigitrecError(f"fonts: {path} is not a font FreeType can read ({e})") from None
    missing = np.asarray(_draw(font, "\ue000", 0), np.uint8)  # a private-use code point: no font draws it
    out = []
    for char in chars:
        mask = np.asarray(_draw(font, char, 0), np.uint8)
        if mask.any() and not (mask.shape == missing.shape and np.array_equal(mask, missing)):
            out.append(char)
    return "".join(out)


def has_digits(path: str | Path) -> bool:
    """True when the font draws ten distinct, non-empty digit glyphs (a font without them draws one
    'missing glyph' box for all ten, or nothing)."""
    try:
        font = ImageFont.truetype(str(path), 48)
    except OSError as e:
        raise DigitrecError(f"fonts: {path} is not a font FreeType can read ({e})") from None
    shapes = set()
    for d in "0123456789":
        mask = np.asarray(_draw(font, d, 0), np.uint8)
        if not mask.any():
            return False
        shapes.add(mask.tobytes())
    return len(shapes) == 10


def _variant(path: str, text: str, rng: np.random.Generator, sketch: float = 0.0) -> np.ndarray:
    """One 28x28 float image of `text` in the font at `path`: random size, pen weight, slant and rotation;
    with chance `sketch`, drawn as a sketch (see `_sketch`)."""
    size = int(rng.integers(*_SIZES))
    font = ImageFont.truetype(path, size)
    weight = int(rng.integers(0, max(1, size // 24) + 1)) if rng.random() < 0.4 else 0  # bolder pen
    if sketch and rng.random() < sketch:
        glyph = _sketch(_draw(font, text, max(weight, size // 20)), size, rng)
    else:
        glyph = _draw(font, text, weight)
    slant = float(rng.uniform(-_SLANT, _SLANT))
    w, h = glyph.size
    glyph = glyph.transform((w + int(abs(slant) * h) + 1, h), Image.Transform.AFFINE,
                            (1, slant, -slant * h if slant > 0 else 0, 0, 1, 0), Image.Resampling.BILINEAR)
    glyph = glyph.rotate(float(rng.uniform(-_ROTATE, _ROTATE)), Image.Resampling.BILINEAR, expand=True)
    return crop_to_mnist(np.asarray(glyph, np.float32) / 255)


def _sketch(glyph: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """The glyph's strokes as their outline, a line about size/40 px wide, the inside left hollow or hatched
    with parallel lines at a random angle and spacing (what outline and sketch fonts draw)."""
    ink = np.asarray(glyph) > 127
    line = max(1, round(size / 40))
    inside = ndimage.binary_erosion(ink, iterations=line)
    out = ink & ~inside
    if rng.random() < 0.6:
        yy, xx = np.mgrid[:ink.shape[0], :ink.shape[1]]
        angle = rng.uniform(0, np.pi)
        along = xx * np.cos(angle) + yy * np.sin(angle)
        out |= inside & (along % (line * rng.uniform(3, 6)) < line)
    return Image.fromarray(out.astype(np.uint8) * 255)


def _draw(font: ImageFont.FreeTypeFont, text: str, weight: int) -> Image.Image:
    """`text` drawn white on black with a margin, its strokes widened by `weight` px on each side."""
    left, top, right, bottom = font.getbbox(text, stroke_width=weight)
    pad = 4 + weight
    im = Image.new("L", (max(1, right - left) + 2 * pad, max(1, bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(im).text((pad - left, pad - top), text, font=font, fill=255, stroke_width=weight,
                            stroke_fill=255)
    return im
