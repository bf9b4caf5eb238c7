"""Synthetic one-line numbers made from MNIST training digits, for training the line reader.

Each line holds 1-10 digits of slightly different heights with uneven gaps (some touching or overlapping),
vertical jitter, slant and stroke-width changes, cut to its ink and scaled to LINE_H pixels high: the same
form `read.lines.line_image` gives a line found in a photo. Lines are made on the CPU in batches of tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from digitrec.data.mnist import Split

LINE_H = 32  # height of a line image the line reader sees
MAX_DIGITS = 10
LOOSE_SIZE = (0.15, 0.4)  # a loosely written line's size jitter is drawn from this range...
LOOSE_RISE = (0.06, 0.18)  # ...its vertical jitter sigma from this one (digit heights)...
LOOSE_DRIFT = 0.5  # ...and its baseline climbs or falls by up to this many digit heights, first digit to last


@dataclass(frozen=True)
class LineStyle:
    """How synthetic lines vary: digit count, spacing, touching, size and stroke changes."""

    min_digits: int = 1
    max_digits: int = MAX_DIGITS
    touch_p: float = 0.15  # chance that a gap is negative (neighbours touch or overlap)
    overlap: float = 0.15  # the deepest overlap, in digit heights
    gap: tuple[float, float] = (0.05, 0.8)  # other gaps, in digit heights
    size_jitter: float = 0.15  # each digit's height varies by up to this fraction
    rise: float = 0.06  # vertical jitter sigma in digit heights (clipped at 2.5 sigma)
    slant: float = 0.25  # shear up to this (x shift per unit of height)
    thicken_p: float = 0.3
    thin_p: float = 0.15
    lowres_p: float = 0.3  # chance to be shrunk to 12-24 px and scaled back up (small, blurry photos)
    loose_p: float = 0.0  # share of lines written loosely: digits of uneven size, off the line (LOOSE_*)


def glyphs(split: Split) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every digit of `split` cut to its ink, as float [h, w] in [0, 1], with its label."""
    images = split.images.reshape(-1, 28, 28).float() / 255.0
    inked = images > 0.05
    rows, cols = inked.any(2), inked.any(1)
    out = []
    for img, r, c in zip(images, rows, cols):
        ys, xs = torch.nonzero(r).flatten(), torch.nonzero(c).flatten()
        out.append(img[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1].contiguous())
    return out, split.labels.long()


def make_lines(
    pool: list[torch.Tensor], labels: torch.Tensor, n: int, gen: torch.Generator, style: LineStyle = LineStyle()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` lines: images [n, 1, LINE_H, W] (zero-padded on the right), their widths [n], the digit labels
    concatenated [sum of lengths] and the lengths [n] (the form `F.ctc_loss` takes, classes 1-10 = digits 0-9)."""
    lines, targets, lengths = [], [], []
    for _ in range(n):
        count = int(torch.randint(style.min_digits, style.max_digits + 1, (), generator=gen))
        idx = torch.randint(0, len(pool), (count,), generator=gen)
        lines.append(_compose([pool[i] for i in idx.tolist()], gen, style))
        targets.append(labels[idx] + 1)
        lengths.append(count)
    widths = torch.tensor([t.shape[1] for t in lines])
    batch = torch.zeros(n, 1, LINE_H, int(widths.max()))
    for i, t in enumerate(lines):
        batch[i, 0, :, :t.shape[1]] = t
    return batch, widths, torch.cat(targets), torch.tensor(lengths)


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _compose(digits: list[torch.Tensor], gen: torch.Generator, style: LineStyle) -> torch.Tensor:
    """One line at LINE_H px: digits pasted left to right at a working height of 40 px, then cut and scaled."""
    unit = 40.0
    size_jitter, rise_sigma, climb = style.size_jitter, style.rise, 0.0
    if style.loose_p and float(torch.rand((), generator=gen)) < style.loose_p:
        size_jitter, rise_sigma = _u(gen, *LOOSE_SIZE), _u(gen, *LOOSE_RISE)
        climb = _u(gen, -LOOSE_DRIFT, LOOSE_DRIFT) * unit
    scaled = []
    for d in digits:
        h = max(8, round(unit * _u(gen, 1 - size_jitter, 1 + size_jitter)))
        w = max(1, round(d.shape[1] * h / d.shape[0]))
        scaled.append(F.interpolate(d[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0])
    gaps = [unit * (-_u(gen, 0.02, style.overlap) if float(torch.rand((), generator=gen)) < style.touch_p
                    else _u(gen, *style.gap)) for _ in digits[1:]]
    # room for the tallest digit, 2.5 sigma of jitter either side and the climb (two heights hold the default's)
    band = round(unit * max(2.0, 1.1 + size_jitter + 5 * rise_sigma) + abs(climb))
    width = int(sum(s.shape[1] for s in scaled) + sum(max(g, 0) for g in gaps)) + 4
    canvas = torch.zeros(band, width)
    x = 2.0
    for k, s in enumerate(scaled):
        rise = max(-2.5, min(2.5, float(torch.randn((), generator=gen)))) * rise_sigma * unit
        rise += climb * (k / max(len(scaled) - 1, 1) - 0.5)
        top = min(max(int((band - s.shape[0]) / 2 + rise), 0), band - s.shape[0])
        left = max(0, int(x))
        region = canvas[top:top + s.shape[0], left:left + s.shape[1]]
        region.copy_(torch.maximum(region, s[:region.shape[0], :region.shape[1]]))
        x += s.shape[1] + (gaps[k] if k < len(gaps) else 0)
    img = canvas[None, None]
    shear = _u(gen, -style.slant, style.slant)
    if abs(shear) > 0.02:
        theta = torch.tensor([[[1.0, shear * band / width, 0.0], [0.0, 1.0, 0.0]]])
        pad = int(abs(shear) * band / 2) + 1
        img = F.pad(img, (pad, pad))
        theta[0, 0, 1] = shear * band / img.shape[-1]
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)
        img = F.grid_sample(img, grid, align_corners=False)
    r = float(torch.rand((), generator=gen))
    if r < style.thicken_p:
        img = F.max_pool2d(img, 3, 1, 1)
    elif r < style.thicken_p + style.thin_p:
        img = -F.max_pool2d(-img, 3, 1, 1) * 0.5 + img * 0.5
    return to_line_height(img[0, 0], gen if float(torch.rand((), generator=gen)) < style.lowres_p else None)


def to_line_height(ink: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Ink [H, W] cut to its inked rows and columns and scaled to LINE_H px high (width in proportion), with
    its strongest ink at 1; given `gen`, first shrunk to 12-24 px high and scaled back (a small photo)."""
    inked = ink > 0.05
    rows, cols = torch.nonzero(inked.any(1)).flatten(), torch.nonzero(inked.any(0)).flatten()
    if rows.numel() == 0:
        return torch.zeros(LINE_H, 4)
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = LINE_H / ink.shape[0]
    if gen is not None:
        small = int(torch.randint(12, 25, (), generator=gen))
        s = small / ink.shape[0]
        ink = F.interpolate(ink[None, None], size=(small, max(1, round(ink.shape[1] * s))), mode="area")[0, 0]
        scale = LINE_H / small
    size = (LINE_H, max(4, round(ink.shape[1] * scale)))
    mode = "area" if scale < 1 else "bilinear"
    out = F.interpolate(ink[None, None], size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))
    out = out[0, 0].clamp(0, 1)
    return out / out.max().clamp_min(1e-6)
