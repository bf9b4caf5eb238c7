"""Images that are not one digit: two digits touching or overlapping, framed as MNIST frames a digit.

A reader that splits a written number into digits asks the classifier about candidate pieces, and
a piece holding two touching digits ("16" with its thin 1 against the 6) must not look like a
confident "6". Training on such pairs toward a uniform output (outlier exposure) teaches the model
to say so. Pairs are made from the batch being trained on, on its device, with a handful of
batched ops: no per-sample Python.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["touching_pairs", "uniform_loss"]

_INK = 0.2  # a pixel brighter than this is ink when finding a digit's extent
_FRAME = 20.0  # MNIST scales the longest side of the ink to 20 px...
_FIELD = 28  # ...and centres its mass in a 28x28 field


def touching_pairs(images: torch.Tensor, count: int, gen: torch.Generator,
                   overlap: tuple[float, float] = (-0.05, 0.25), jitter: float = 0.1) -> torch.Tensor:
    """`count` images [count, 1, 28, 28] each showing two digits of `images` side by side.

    The right digit's ink starts where the left one's ends, moved left by a fraction of the digit
    height drawn from `overlap` (negative: a hairline gap) and up or down by up to `jitter` of it.
    The pair is then cropped to its ink, scaled so its longest side is 20 px and centred by mass.
    """
    n = images.shape[0]
    if count <= 0 or n == 0:
        return images.new_zeros((0, 1, _FIELD, _FIELD))
    dev = images.device
    pick = torch.randint(0, n, (2, count), generator=gen, device=dev)
    left, right = images[pick[0], :1], images[pick[1], :1]
    l0, l1, t0, t1 = _extent(left)
    r0, _, u0, u1 = _extent(right)
    height = torch.maximum(t1 - t0, u1 - u0).clamp(min=1).float()
    draw = torch.rand((2, count), generator=gen, device=dev)
    lo, hi = overlap
    shift_x = (l1 - r0).float() - (lo + (hi - lo) * draw[0]) * height  # where the right digit's ink begins
    shift_y = ((t0 + t1) - (u0 + u1)).float() / 2 + jitter * (2 * draw[1] - 1) * height
    size = images.shape[-1]
    canvas_w = 3 * size
    pad = (0, canvas_w - size)
    wide_left = F.pad(left, pad)
    wide_right = _shift(F.pad(right, pad), shift_x.round(), shift_y.round())
    return _frame(torch.maximum(wide_left, wide_right))


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the uniform distribution: lowest when the model has no favourite class."""
    return -logits.float().log_softmax(1).mean()


def _extent(images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per image, the ink's first and one-past-last column and row (0, 0 for a blank image)."""
    ink = images[:, 0] > _INK
    cols, rows = ink.any(1), ink.any(2)
    return (*_span(cols), *_span(rows))


def _span(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last True index along dim 1 of a [N, L] mask."""
    length = occupied.shape[1]
    idx = torch.arange(length, device=occupied.device)
    first = torch.where(occupied, idx, length).amin(1)
    last = torch.where(occupied, idx + 1, 0).amax(1)
    return torch.minimum(first, last), last


def _shift(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Move each image right by dx and down by dy whole pixels, filling with black."""
    n, _, h, w = images.shape
    rows = torch.arange(h, device=images.device)[None, :] - dy.long()[:, None]
    cols = torch.arange(w, device=images.device)[None, :] - dx.long()[:, None]
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = images[torch.arange(n, device=images.device)[:, None, None], 0,
                 rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    return (out * valid).unsqueeze(1)


def _frame(canvas: torch.Tensor) -> torch.Tensor:
    """MNIST's framing, batched: longest side of the ink to 20 px, centre of mass to the field's centre."""
    n, _, h, w = canvas.shape
    c0, c1, r0, r1 = _extent(canvas)
    side = torch.maximum(c1 - c0, r1 - r0).clamp(min=1).float()
    scale = _FRAME / side  # output pixels per canvas pixel
    mass = canvas[:, 0].sum((1, 2)).clamp(min=1e-6)
    cy = (canvas[:, 0].sum(2) * torch.arange(h, device=canvas.device)).sum(1) / mass
    cx = (canvas[:, 0].sum(1) * torch.arange(w, device=canvas.device)).sum(1) / mass
    # output normalised coordinate g maps to canvas pixel c + (FIELD / 2) g / scale (align_corners=False)
    theta = torch.zeros((n, 2, 3), device=canvas.device)
    theta[:, 0, 0] = _FIELD / (scale * w)
    theta[:, 0, 2] = (2 * cx + 1) / w - 1
    theta[:, 1, 1] = _FIELD / (scale * h)
    theta[:, 1, 2] = (2 * cy + 1) / h - 1
    # A reader thickens strokes that shrinking would leave thinner than MNIST's; so, by a pixel, here.
    canvas = torch.where((scale < 0.8)[:, None, None, None],
                         F.max_pool2d(F.pad(canvas, (0, 1, 0, 1)), 2, stride=1), canvas)
    grid = F.affine_grid(theta, [n, 1, _FIELD, _FIELD], align_corners=False)
    out = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out / out.amax((2, 3), keepdim=True).clamp(min=1e-6)).clamp(0, 1)
