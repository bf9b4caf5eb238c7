"""Regenerate the read-quality evaluation sets: images as real inputs look, each a folder with labels.json.

Sets: scan (MNIST test digits as dark ink on scanned or photographed paper), canvas (RGBA 280x280 drawing-canvas
exports), fonts (digits in handwriting fonts), lines (numbers of 3-10 digits on uneven paper, JPEG) and reject
(blank pages, noise, letters: nothing to read), cropped (scans and photos cut 0-4 px from the ink, as a
user crops a picture to the digit or a form's box clips it) and forms (digits on ruled or squared paper, or in
a printed box). Only the MNIST *test* split is used, never train.
Each folder holds images, labels.json ({filename: "digits"}, "" for nothing to read) and meta.json (how each
image was made). Every image draws from its own generator seeded by (seed, set, index), so a re-run writes the
same bytes and --n N gives a prefix of the full set.

Fonts (Debian): apt-get install -y fonts-kaushanscript fonts-kristi fonts-rufscript fonts-klee fonts-seto fonts-cabinsketch
Run: python benchmarks/read_sets.py [--out DIR] [--n N] [--seed S] [--only scan lines ...] [--data-dir DIR]
     [--fonts FILE ...]  (a fonts set from other font files, e.g. fonts held out of training)
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from digitrec.data.fetch import MNIST_FILES, default_data_dir, verify_files
from digitrec.data.idx import read_idx
from digitrec.errors import DigitrecError

OUT = Path(__file__).resolve().parent / "results" / "read_sets"
SETS = ("scan", "canvas", "fonts", "lines", "reject", "cropped", "forms")
COUNTS = {"scan": 2000, "canvas": 2000, "lines": 500, "reject": 300, "cropped": 1000, "forms": 1000}
FORM_KINDS = ("ruled", "grid", "box")
FONT_VARIANTS = 20  # images per (font, digit) in the full fonts set
CANVAS = 280
FONTS = (  # (Debian package, file): handwriting-style faces
    ("fonts-kaushanscript", "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf"),
    ("fonts-kristi", "/usr/share/fonts/truetype/kristi/Kristi.ttf"),
    ("fonts-rufscript", "/usr/share/fonts/truetype/rufscript/Rufscript010.ttf"),
    ("fonts-klee", "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf"),
    ("fonts-klee", "/usr/share/fonts/truetype/klee/KleeOne-SemiBold.ttf"),
    ("fonts-seto", "/usr/share/fonts/truetype/seto/setofont.ttf"),
    ("fonts-cabinsketch", "/usr/share/fonts/truetype/cabinsketch/CabinSketch-Regular.ttf"),
    ("fonts-cabinsketch", "/usr/share/fonts/truetype/cabinsketch/CabinSketch-Bold.ttf"),
)
LETTER_FONTS = tuple(f"/usr/share/fonts/truetype/dejavu/{name}.ttf"
                     for name in ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSerif-Bold"))
LETTERS = "AHKMNRVWX"  # letters that do not pass for a digit (no O, I, S, Z, B, G)
REJECT_KINDS = ("blank", "texture", "gradient", "transparent", "noise", "letter")
REJECT_P = (0.15, 0.15, 0.15, 0.1, 0.2, 0.25)


@dataclass
class Sample:
    """One image to write, its label ("" for nothing to read), format and how it was made."""

    image: Image.Image
    label: str
    fmt: str = "png"
    quality: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What the set builders draw from: MNIST test digits, a per-set shuffled order and the fonts found."""

    images: np.ndarray  # uint8 [N, 28, 28], white ink on black
    labels: np.ndarray  # int [N]
    seed: int
    fonts: list[tuple[str, str]]
    letter_fonts: list[str]

    def order(self, name: str) -> np.ndarray:
        """A fixed shuffle of the test digits for one set, so scan and canvas use different digits first."""
        return np.random.default_rng([self.seed, SETS.index(name), 1 << 20]).permutation(len(self.labels))


# --- ink: float arrays in [0, 1], 1 = full stroke ------------------------------------------------------------------

def crop(ink: np.ndarray, level: float = 0.05) -> np.ndarray:
    """The ink cropped to the box of pixels above `level`."""
    ys, xs = np.nonzero(ink > level)
    return ink[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of a float image."""
    return np.asarray(Image.fromarray(a.astype(np.float32)).resize((width, height), Image.BICUBIC), np.float32)


def scale_to_height(ink: np.ndarray, height: int, rng: np.random.Generator) -> np.ndarray:
    """Resize ink to `height` px keeping its aspect; large upscales get a pen-like edge instead of a blur ramp."""
    h, w = ink.shape
    out = np.clip(resize(ink, height, max(1, round(w * height / h))), 0, 1)
    if height > 2 * h:
        lo = rng.uniform(0.15, 0.35)
        out = np.clip((out - lo) / rng.uniform(0.2, 0.4), 0, 1)
    return out


def rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    """Ink rotated counter-clockwise by `degrees`, canvas grown to fit, then cropped."""
    im = Image.fromarray(ink.astype(np.float32)).rotate(degrees, Image.BICUBIC, expand=True, fillcolor=0.0)
    return crop(np.clip(np.asarray(im, np.float32), 0, 1))


def digit_ink(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8 28x28) as float ink cropped to its strokes."""
    return crop(digit.astype(np.float32) / 255)


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def text_ink(path: str, text: str, size: int) -> np.ndarray:
    """`text` drawn in the font at `path` and `size` points, as cropped float ink."""
    font = _font(path, size)
    left, top, right, bottom = font.getbbox(text)
    pad = size // 4 + 2
    im = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(im).text((pad - left, pad - top), text, font=font, fill=255)
    return crop(np.asarray(im, np.float32) / 255)


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel skeleton of a boolean mask."""
    img = np.pad(mask, 1).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1)
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:], p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(x.astype(np.int32) for x in n)
            turns = sum(((n[k] == 0) & (n[(k + 1) % 8] == 1)).astype(np.int32) for k in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                side = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0)
            else:
                side = ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            drop = (img == 1) & (count >= 2) & (count <= 6) & (turns == 1) & side
            if drop.any():
                img[drop] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def restroke(ink: np.ndarray, pen: float) -> np.ndarray:
    """The digit redrawn along its skeleton with a round pen `pen` px wide, anti-aliased (2x supersampled)."""
    ys, xs = np.nonzero(thin(ink > 0.5))
    pad = math.ceil(pen / 2) + 2
    h, w = ink.shape[0] + 2 * pad, ink.shape[1] + 2 * pad
    im = Image.new("L", (2 * w, 2 * h), 0)
    draw, r = ImageDraw.Draw(im), pen  # radius in 2x pixels = pen width in 1x pixels / 2 * 2
    for y, x in zip(ys.tolist(), xs.tolist()):
        cx, cy = 2 * (x + pad) + 1, 2 * (y + pad) + 1
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    return crop(np.asarray(im.resize((w, h), Image.BOX), np.float32) / 255)


def place(ink: np.ndarray, height: int, width: int, top: int, left: int) -> np.ndarray:
    """A `height` x `width` ink layer holding `ink` at (top, left)."""
    out = np.zeros((height, width), np.float32)
    out[top: top + ink.shape[0], left: left + ink.shape[1]] = ink
    return out


def with_margins(ink: np.ndarray, rng: np.random.Generator, lo: float, hi: float, cap: int = 1600) -> np.ndarray:
    """Ink on a layer with a random margin on each side (lo..hi times the ink height): off-centre, any size."""
    h, w = ink.shape
    top, bottom, left, right = (rng.uniform(lo, hi, 4) * h).astype(int) + 2
    scale = max(0.0, min(1.0, (cap - h) / max(1, top + bottom), (cap - w) / max(1, left + right)))
    top, bottom, left, right = (int(m * scale) + 2 for m in (top, bottom, left, right))
    return place(ink, h + top + bottom, w + left + right, top, left)


def on_page(ink: np.ndarray, rng: np.random.Generator, cap: int = 1600) -> np.ndarray:
    """Ink at a random spot of a photo-like page 2-6x its height, page aspect 0.6-1.6 (at most cap px a side)."""
    h, w = ink.shape
    page_h = min(cap, int(h * rng.uniform(2, 6)))
    page_w = max(w + 4, min(cap, int(page_h * rng.uniform(0.6, 1.6))))
    page_h = max(h + 4, page_h)
    top, left = int(rng.integers(2, page_h - h - 1)), int(rng.integers(2, page_w - w - 1))
    return place(ink, page_h, page_w, top, left)


# --- paper ---------------------------------------------------------------------------------------------------------

@dataclass
class Paper:
    """How a page looks: gray tone, blotches, grain, lighting falloff, colour cast, ink colour, blur."""

    tone: float = 235.0
    ink: float = 30.0
    texture: float = 0.0
    grain: float = 0.0
    gradient: float = 0.0
    cast: tuple[float, float, float] | None = None  # RGB multipliers; None = grayscale
    blue_ink: bool = False
    blur: float = 0.0
    rule: tuple[int, int, float] | None = None  # ruled line (row, thickness, darkness)
    printed: np.ndarray | None = None  # lines printed on the paper (ruled, squared, boxes), darkness [H, W]

    @classmethod
    def random(cls, rng: np.random.Generator, *, photo: bool = False, uneven: bool = False) -> Paper:
        """Paper tone 200-255, ink 0-80; photos and uneven pages get stronger blotches and lighting falloff."""
        strong = photo or uneven
        colour = rng.random() < 0.3
        return cls(
            tone=float(rng.uniform(200, 255)),
            ink=float(rng.uniform(0, 80 if not colour else 40)),
            texture=float(rng.uniform(0, 12 if strong else 6)),
            grain=float(rng.uniform(0, 6)),
            gradient=float(rng.uniform(0.1, 0.35) if strong else rng.uniform(0, 0.15)),
            cast=tuple(float(c) for c in rng.uniform(0.92, 1.0, 3)) if colour else None,
            blue_ink=colour and rng.random() < 0.5,
            blur=float(rng.uniform(0.3, 1.2)) if rng.random() < (0.7 if photo else 0.4) else 0.0,
        )

    def render(self, ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
        """Ink [H, W] in [0, 1] laid on this paper, as an 8-bit L or RGB image."""
        h, w = ink.shape
        page = np.full((h, w), self.tone, np.float32)
        if self.texture:
            grid = rng.standard_normal((int(rng.integers(3, 9)),) * 2).astype(np.float32)
            page += self.texture * resize(grid, h, w)
        if self.rule:
            row, thick, dark = self.rule
            page[max(0, row): row + thick] -= dark
        if self.printed is not None:
            page -= self.printed
        if self.cast is None:
            img = page * (1 - ink) + self.ink * ink
        else:
            colour = np.array([self.ink, self.ink + 10, self.ink + 70] if self.blue_ink else [self.ink] * 3, np.float32)
            img = page[..., None] * np.array(self.cast, np.float32) * (1 - ink[..., None]) + colour * ink[..., None]
        img = img * self._light(h, w, rng).reshape(h, w, *([1] * (img.ndim - 2)))
        if self.grain:
            img = img + rng.normal(0, self.grain, (h, w)).astype(np.float32).reshape(h, w, *([1] * (img.ndim - 2)))
        out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        return out.filter(ImageFilter.GaussianBlur(self.blur)) if self.blur else out

    def _light(self, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        """Lighting falloff: 1 on the lit side down to 1 - gradient, in a random direction."""
        theta = rng.uniform(0, 2 * math.pi)
        xs, ys = np.arange(w, dtype=np.float32)[None], np.arange(h, dtype=np.float32)[:, None]
        proj = xs * math.cos(theta) + ys * math.sin(theta)
        proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        return 1 - self.gradient * proj


def jpeg_or_png(rng: np.random.Generator, p_jpeg: float, quality: tuple[int, int]) -> tuple[str, int | None]:
    """The file format of one image: ("jpg", quality) with probability p_jpeg, else ("png", None)."""
    if rng.random() < p_jpeg:
        return "jpg", int(rng.integers(quality[0], quality[1] + 1))
    return "png", None


def paper_meta(paper: Paper) -> dict[str, Any]:
    """The paper settings worth keeping in meta.json, rounded."""
    out = {k: round(v, 3) for k, v in vars(paper).items() if isinstance(v, float)}
    out["rgb"] = paper.cast is not None
    return out


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> int:
    """An integer spread evenly over scales between lo and hi."""
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


# --- the sets ------------------------------------------------------------------------------------------------------

def scanned(layer: np.ndarray, label: str, photo: bool, rng: np.random.Generator, meta: dict[str, Any],
            printed: np.ndarray | None = None) -> Sample:
    """An ink layer on random paper (with `printed` lines on it, if given), scanned or photographed, saved as
    PNG or JPEG; the paper joins `meta`."""
    paper = Paper.random(rng, photo=photo)
    paper.printed = printed
    fmt, quality = jpeg_or_png(rng, 0.8 if photo else 0.5, (60, 95))
    return Sample(paper.render(layer, rng), label, fmt, quality, {**meta, **paper_meta(paper)})


def make_scan(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """An MNIST test digit as dark ink on paper: any size and margin, some rotated, scanned or photographed."""
    idx = int(ctx.order("scan")[i % len(ctx.labels)])
    height = log_uniform(rng, 20, 300)
    ink = scale_to_height(digit_ink(ctx.images[idx]), height, rng)
    angle = float(rng.uniform(-8, 8)) if rng.random() < 0.4 else 0.0
    if angle:
        ink = rotate(ink, angle)
    photo = rng.random() < 0.3
    layer = on_page(ink, rng) if photo else with_margins(ink, rng, 0.05, 1.2)
    return scanned(layer, str(ctx.labels[idx]), photo, rng,
                    {"mnist_index": idx, "height": height, "angle": round(angle, 2), "photo": photo})


def make_cropped(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """An MNIST test digit scanned or photographed as in `make_scan`, the picture cut 0-4 px from the ink on each
    side (0: the strokes run off the edge)."""
    idx = int(ctx.order("cropped")[i % len(ctx.labels)])
    height = log_uniform(rng, 20, 300)
    ink = scale_to_height(digit_ink(ctx.images[idx]), height, rng)
    top, bottom, left, right = (int(m) for m in rng.integers(0, 5, 4))
    layer = place(ink, ink.shape[0] + top + bottom, ink.shape[1] + left + right, top, left)
    photo = rng.random() < 0.3
    return scanned(layer, str(ctx.labels[idx]), photo, rng,
                    {"mnist_index": idx, "height": height, "margins": [top, bottom, left, right], "photo": photo})


def make_canvas(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """An MNIST test digit as a 280x280 RGBA canvas export: transparent, black strokes, alpha = stroke."""
    idx = int(ctx.order("canvas")[i % len(ctx.labels)])
    height = int(rng.integers(80, 251))
    ink = scale_to_height(digit_ink(ctx.images[idx]), height, rng)
    pen = float(rng.uniform(6, max(6.0, min(20.0, height / 6)))) if rng.random() < 0.15 else None
    if pen is not None:
        ink = restroke(ink, pen)
    if max(ink.shape) > CANVAS:
        ink = crop(np.clip(resize(ink, *(round(s * (CANVAS - 2) / max(ink.shape)) for s in ink.shape)), 0, 1))
    top = int(rng.integers(0, CANVAS - ink.shape[0] + 1))
    left = int(rng.integers(0, CANVAS - ink.shape[1] + 1))
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    rgba[..., 3] = np.rint(place(ink, CANVAS, CANVAS, top, left) * 255).astype(np.uint8)
    meta = {"mnist_index": idx, "height": height, "pen": None if pen is None else round(pen, 2),
            "box": [left, top, int(ink.shape[1]), int(ink.shape[0])]}
    return Sample(Image.fromarray(rgba, "RGBA"), str(ctx.labels[idx]), meta=meta)


def make_font(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """Digit i % 10 in a handwriting font (fonts taken in turn), any size, small rotation, dark on light."""
    digit, (package, path) = i % 10, ctx.fonts[(i // 10) % len(ctx.fonts)]
    size = log_uniform(rng, 28, 280)
    ink = text_ink(path, str(digit), size)
    angle = float(rng.uniform(-6, 6))
    ink = rotate(ink, angle)
    layer = with_margins(ink, rng, 0.1, 1.0)
    paper = Paper.random(rng)
    fmt, quality = jpeg_or_png(rng, 0.4, (70, 95))
    meta = {"font": Path(path).name, "package": package, "points": size, "angle": round(angle, 2), **paper_meta(paper)}
    return Sample(paper.render(layer, rng), str(digit), fmt, quality, meta)


@dataclass(frozen=True)
class LineRecipe:
    """How `make_line` writes a number. The defaults make the lines set; other values write lines beyond its
    range (`benchmarks/line_robustness.py`), to see what a differently made held-out set would cost."""

    height: tuple[int, int] = (28, 120)  # digit height in px, log-uniform
    size: tuple[float, float] = (0.85, 1.15)  # each digit's height, times the line's
    touch_p: float = 0.1  # share of gaps where the digits touch or overlap (by 2-12 % of the height)
    gaps: tuple[float, float] = (0.1, 0.6)  # the other gaps, in digit heights
    rise: float = 0.06  # each digit's vertical jitter, sigma in digit heights (clipped at 2.5 sigma)
    drift: float = 0.0  # the baseline climbs or falls this many digit heights from the first digit to the last
    skew: float = 2.0  # the whole line rotated by up to this many degrees...
    skew_p: float = 0.3  # ...in this share of the lines
    quality: tuple[int, int] = (50, 90)  # JPEG quality
    blur: tuple[float, float] | None = None  # Gaussian blur sigma in px, instead of the paper's own
    rows: int = 1  # numbers written one under another (each a line as above, digits of one height)
    digits: tuple[int, int] = (3, 10)  # how many digits a number has (inclusive range)


def make_line(ctx: Context, i: int, rng: np.random.Generator, style: LineRecipe = LineRecipe()) -> Sample:
    """A number of 3-10 MNIST test digits in a row: uneven spacing (some touching), jitter, uneven paper, JPEG.
    With `style.rows` > 1, that many numbers one under another, 0.3-1 digit heights apart, each indented by up
    to a digit height; the label holds them top to bottom, a newline between."""
    ink, idx, height, skew, touching = _line_ink(ctx, rng, style)
    labels = [_number(ctx, idx)]
    for _ in range(style.rows - 1):
        below, more, _, _, more_touching = _line_ink(ctx, rng, style, height)
        touching += more_touching
        gap, indent = (int(v * height) for v in rng.uniform((0.3, 0.0), (1.0, 1.0)))
        stacked = np.zeros((ink.shape[0] + gap + below.shape[0], max(ink.shape[1], indent + below.shape[1])), np.float32)
        stacked[:ink.shape[0], :ink.shape[1]] = ink
        stacked[ink.shape[0] + gap:, indent:indent + below.shape[1]] = below
        ink, idx = stacked, np.concatenate([idx, more])
        labels.append(_number(ctx, more))
    ink = with_margins(ink, rng, 0.2, 1.0, cap=4000)
    paper = Paper.random(rng, uneven=True)
    if style.blur:
        paper.blur = float(rng.uniform(*style.blur))
    if rng.random() < 0.4:  # a faint ruled line just under the digits
        below = int(np.nonzero(ink.max(1) > 0.05)[0].max()) + int(0.08 * height) + 1
        paper.rule = (below, int(rng.integers(1, 4)), float(rng.uniform(15, 40)))
    quality = int(rng.integers(style.quality[0], style.quality[1] + 1))
    meta = {"mnist_indices": idx.tolist(), "height": height, "skew": round(skew, 2),
            "touching_gaps": touching, "ruled": paper.rule is not None, **paper_meta(paper)}
    return Sample(paper.render(ink, rng), "\n".join(labels), "jpg", quality, meta)


def _number(ctx: Context, idx: np.ndarray) -> str:
    """The digits of the MNIST test images `idx`, as one string."""
    return "".join(str(ctx.labels[j]) for j in idx)


def _line_ink(ctx: Context, rng: np.random.Generator, style: LineRecipe, height: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, int, float, int]:
    """One number's ink, cut to it: its ink, MNIST indices, digit height (drawn unless given), skew in degrees
    and how many of its gaps touch."""
    count = int(rng.integers(style.digits[0], style.digits[1] + 1))
    idx = rng.integers(0, len(ctx.labels), count)
    height = log_uniform(rng, *style.height) if height is None else height
    glyphs = [scale_to_height(digit_ink(ctx.images[j]), max(12, round(height * rng.uniform(*style.size))), rng)
              for j in idx]
    gaps = [float(-rng.uniform(0.02, 0.12) if rng.random() < style.touch_p else rng.uniform(*style.gaps)) * height
            for _ in range(count - 1)]
    # room for the climb and for jitter past the set's (2.5 sigma either side); the set's own band is 1.6 heights
    band = int((1.6 + style.drift + 5 * max(0.0, style.rise - 0.06)) * height)
    climb = style.drift * height * (1 if rng.random() < 0.5 else -1) if style.drift else 0.0
    ink, x = np.zeros((band, int(sum(g.shape[1] for g in glyphs) + sum(gaps)) + 2), np.float32), 1.0
    for k, g in enumerate(glyphs):
        along = climb * (k / max(count - 1, 1) - 0.5)
        jitter = np.clip(rng.normal(0, style.rise * height), -2.5 * style.rise * height, 2.5 * style.rise * height)
        top = min(max((band - g.shape[0]) // 2 + int(along + jitter), 0), band - g.shape[0])
        box = (slice(top, top + g.shape[0]), slice(int(x), int(x) + g.shape[1]))
        ink[box] = np.maximum(ink[box], g)
        x += g.shape[1] + (gaps[k] if k < count - 1 else 0)
    skew = float(rng.uniform(-style.skew, style.skew)) if rng.random() < style.skew_p else 0.0
    return rotate(ink, skew) if skew else crop(ink), idx, height, skew, sum(g < 0 for g in gaps)


def make_form(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """An MNIST test digit written on ruled or squared paper, or in a printed box, scanned or photographed."""
    idx = int(ctx.order("forms")[i % len(ctx.labels)])
    height = log_uniform(rng, 30, 240)
    ink = scale_to_height(digit_ink(ctx.images[idx]), height, rng)
    layer = with_margins(ink, rng, 0.3, 1.0)
    h, w = layer.shape
    top, left = (int(v) for v in np.argwhere(layer > 0.05).min(0))
    bottom, right = (int(v) for v in np.argwhere(layer > 0.05).max(0))
    kind = str(rng.choice(FORM_KINDS))
    thick = int(rng.integers(1, 3 if kind == "grid" else 4))
    dark = float(rng.uniform(50, 140 if kind != "box" else 200))
    printed = np.zeros((h, w), np.float32)
    if kind == "ruled":  # lines about a digit apart, the digit between or across them
        step = max(6, int(height * rng.uniform(0.5, 1.1)))
        for row in range(int(rng.integers(0, step)), h, step):
            printed[row: row + thick] = dark
    elif kind == "grid":
        step = max(5, int(height * rng.uniform(0.2, 0.5)))
        for row in range(int(rng.integers(0, step)), h, step):
            printed[row: row + thick] = dark
        for col in range(int(rng.integers(0, step)), w, step):
            printed[:, col: col + thick] = dark
    else:  # a box 5-40 % of the digit's height clear of it on each side, inside the image
        pad = (rng.uniform(0.05, 0.4, 4) * height).astype(int) + thick + 1
        y0, x0 = max(0, top - pad[0]), max(0, left - pad[1])
        y1, x1 = min(h - 1, bottom + pad[2]), min(w - 1, right + pad[3])
        printed[y0: y0 + thick, x0: x1 + 1] = printed[y1 - thick + 1: y1 + 1, x0: x1 + 1] = dark
        printed[y0: y1 + 1, x0: x0 + thick] = printed[y0: y1 + 1, x1 - thick + 1: x1 + 1] = dark
    photo = rng.random() < 0.3
    return scanned(layer, str(ctx.labels[idx]), photo, rng, {"mnist_index": idx, "height": height, "kind": kind,
                   "line_px": thick, "line_dark": round(dark, 1), "photo": photo}, printed)


def make_reject(ctx: Context, i: int, rng: np.random.Generator) -> Sample:
    """Nothing to read: a blank, textured or shaded page, a transparent canvas, noise, or a letter."""
    kind = str(rng.choice(REJECT_KINDS, p=REJECT_P))
    h, w = (int(v) for v in rng.integers(64, 900, 2))
    paper = Paper.random(rng)
    meta: dict[str, Any] = {"kind": kind}
    if kind == "transparent":
        rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
        rgba[..., :3] = 255 if rng.random() < 0.5 else 0
        return Sample(Image.fromarray(rgba, "RGBA"), "", meta=meta)
    if kind == "noise":
        return _noise(h, w, rng, meta)
    if kind == "letter":
        letter, path = str(rng.choice(list(LETTERS))), ctx.letter_fonts[int(rng.integers(len(ctx.letter_fonts)))]
        size = log_uniform(rng, 28, 280)
        layer = with_margins(rotate(text_ink(path, letter, size), float(rng.uniform(-6, 6))), rng, 0.1, 1.0)
        meta.update(letter=letter, font=Path(path).name, points=size)
        fmt, quality = jpeg_or_png(rng, 0.4, (60, 95))
        return Sample(paper.render(layer, rng), "", fmt, quality, meta | paper_meta(paper))
    paper.texture = float(rng.uniform(8, 20)) if kind == "texture" else 0.0
    paper.gradient = float(rng.uniform(0.15, 0.45)) if kind == "gradient" else 0.0
    fmt, quality = jpeg_or_png(rng, 0.5, (50, 95))
    return Sample(paper.render(np.zeros((h, w), np.float32), rng), "", fmt, quality, meta | paper_meta(paper))


def _noise(h: int, w: int, rng: np.random.Generator, meta: dict[str, Any]) -> Sample:
    """Pure noise: uniform, gaussian around mid-grey, or salt and pepper (0.5-35 % of the pixels) on a light,
    a dark or a grey page."""
    style = str(rng.choice(["uniform", "gaussian", "salt_pepper"]))
    if style == "uniform":
        img = rng.integers(0, 256, (h, w))
    elif style == "gaussian":
        img = rng.normal(rng.uniform(80, 200), rng.uniform(20, 60), (h, w))
    else:
        page = str(rng.choice(["light", "dark", "grey"]))
        img = np.full((h, w), rng.uniform(200, 255) if page == "light" else rng.uniform(0, 55) if page == "dark"
                      else rng.uniform(90, 170))
        dots = rng.random((h, w))
        density = float(rng.uniform(0.005, 0.35))
        salt, pepper = {"light": (0.0, density), "dark": (density, 0.0), "grey": (density / 2, density / 2)}[page]
        img[dots < pepper] = 0
        img[dots > 1 - salt] = 255
        meta.update(page=page, density=round(density, 3))
    meta["noise"] = style
    return Sample(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), "", meta=meta)


BUILDERS: dict[str, Callable[[Context, int, np.random.Generator], Sample]] = {
    "scan": make_scan, "canvas": make_canvas, "fonts": make_font, "lines": make_line, "reject": make_reject,
    "cropped": make_cropped, "forms": make_form,
}


# --- writing -------------------------------------------------------------------------------------------------------

def encode(sample: Sample) -> bytes:
    """The image file's bytes (PNG, or baseline JPEG at the sample's quality)."""
    buf = io.BytesIO()
    if sample.fmt == "jpg":
        sample.image.save(buf, "JPEG", quality=sample.quality)
    else:
        sample.image.save(buf, "PNG", compress_level=1)  # grainy pages barely compress; level 6 cost most of the run
    return buf.getvalue()


def set_size(name: str, ctx: Context, n: int | None) -> int:
    """How many images a set gets: its default, or at most n."""
    full = len(ctx.fonts) * 10 * FONT_VARIANTS if name == "fonts" else COUNTS[name]
    return full if n is None else min(n, full)


def write_set(out: Path, name: str, ctx: Context, n: int | None) -> int:
    """Build one set in a temporary folder and swap it in for out/name; returns how many images it holds."""
    tmp, old = out / f".{name}.tmp-{os.getpid()}", out / f".{name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    labels, items = {}, {}
    for i in range(set_size(name, ctx, n)):
        sample = BUILDERS[name](ctx, i, np.random.default_rng([ctx.seed, SETS.index(name), i]))
        fname = f"{i:05d}.{sample.fmt}"
        (tmp / fname).write_bytes(encode(sample))
        labels[fname] = sample.label
        items[fname] = {**sample.meta, "size": list(sample.image.size), "mode": sample.image.mode,
                        "format": sample.fmt, "quality": sample.quality}
    meta = {"set": name, "seed": ctx.seed, "count": len(labels), "generator": "benchmarks/read_sets.py",
            "source": "MNIST test split" if name in ("scan", "canvas", "lines", "cropped", "forms") else None, "items": items}
    if name == "fonts":
        meta["fonts"] = [{"package": pkg, "file": path} for pkg, path in ctx.fonts]
        meta["fonts_missing"] = [{"package": pkg, "file": path} for pkg, path in FONTS if (pkg, path) not in ctx.fonts]
    (tmp / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if (out / name).exists():
        (out / name).rename(old)
    tmp.rename(out / name)
    shutil.rmtree(old, ignore_errors=True)
    return len(labels)


def load_test_digits(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The verified MNIST test images (uint8 [10000, 28, 28]) and labels; nothing from train."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    files = {k: v for k, v in MNIST_FILES.items() if k.startswith("t10k")}
    bad = {k: s for k, s in verify_files(data_dir, files).items() if s != "ok"}
    if bad:
        listing = ", ".join(f"{k} ({s})" for k, s in bad.items())
        raise DigitrecError(f"MNIST test files in {data_dir} are not usable: {listing}; "
                            f"run `digitrec data fetch --data-dir {data_dir}`")
    images = read_idx(data_dir / "t10k-images-idx3-ubyte").numpy()
    return images, read_idx(data_dir / "t10k-labels-idx1-ubyte").numpy().astype(np.int64)


def available_fonts(log: Callable[[str], object] = print) -> list[tuple[str, str]]:
    """The handwriting fonts installed here; warns about each missing one with the package to install."""
    found = [(pkg, path) for pkg, path in FONTS if Path(path).is_file()]
    for pkg, path in FONTS:
        if not Path(path).is_file():
            log(f"warning: font {path} not found, skipped (apt-get install -y {pkg})")
    return found


def given_fonts(paths: Sequence[str]) -> list[tuple[str, str]]:
    """Fonts named on the command line (a held-out set of other fonts), as (package, file) pairs; the
    package is the file's folder, since Debian installs each font package into its own."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DigitrecError(f"--fonts: no such font file(s): {', '.join(missing)}")
    return [(Path(p).parent.name, str(p)) for p in paths]


def generate(
    out: str | Path = OUT,
    *,
    n: int | None = None,
    seed: int = 0,
    only: Sequence[str] = SETS,
    data_dir: str | Path | None = None,
    fonts: Sequence[str] | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, int]:
    """Write the chosen sets under `out` (each at most n images); returns {set: image count}. `fonts` replaces
    the handwriting fonts of the fonts set (to build a set from fonts held out of training)."""
    unknown = [s for s in only if s not in SETS]
    if unknown:
        raise DigitrecError(f"unknown set(s) {unknown}; expected some of {list(SETS)}")
    images, labels = load_test_digits(data_dir)
    letter_fonts = [p for p in LETTER_FONTS if Path(p).is_file()]
    if "reject" in only and not letter_fonts:
        raise DigitrecError(f"reject set: no DejaVu font at {LETTER_FONTS[0]}; apt-get install -y fonts-dejavu-core")
    found = (given_fonts(fonts) if fonts else available_fonts(log)) if "fonts" in only else []
    ctx = Context(images, labels, seed, found, letter_fonts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in only:
        if name == "fonts" and not ctx.fonts:
            log("warning: no handwriting fonts installed; fonts set skipped")
            continue
        start = time.perf_counter()
        counts[name] = write_set(out, name, ctx, n)
        log(f"{name:7s} {counts[name]:5d} images  {time.perf_counter() - start:6.1f} s  -> {out / name}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the sets (default {OUT})")
    parser.add_argument("--n", type=int, default=None, help="at most N images per set, for quick runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=list(SETS), choices=SETS, help="sets to write (default all)")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST folder (default $DIGITREC_DATA or cache)")
    parser.add_argument("--fonts", nargs="+", default=None, metavar="FILE",
                        help="build the fonts set from these font files instead (fonts held out of training)")
    args = parser.parse_args(argv)
    try:
        generate(args.out, n=args.n, seed=args.seed, only=args.only, data_dir=args.data_dir, fonts=args.fonts)
    except DigitrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
