"""MNIST's own recipe for framing a digit: tight box, strokes MNIST-thick, longest side 20 px, centre of mass
at the centre of a 28x28 field, white ink on black in [0, 1].

Defined once, here: the reader frames every piece of ink it finds this way, and digits rendered from fonts
for training are framed the same way, so the model trains on what it will be shown.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

FIELD = 28  # MNIST image side
BOX = 20  # MNIST digits fill a 20x20 box...
CENTRE = 14.0  # ...whose centre of mass sits here (mean over MNIST train: 14.00, 14.00 in index coordinates)
MID = 4  # big crops are first shrunk to MID * BOX px, where stroke thickening is cheap
STROKE_MIN, STROKE_TARGET = 1.8, 2.4  # stroke width in px at 20-px scale: MNIST's 10th percentile and median


def crop_to_mnist(crop: np.ndarray) -> np.ndarray:
    """MNIST's recipe on a crop of ink: tight box, strokes MNIST-thick, longest side 20 px, centre of mass at 14."""
    crop = _tight(np.asarray(crop, np.float32))
    if crop is None:
        return np.zeros((FIELD, FIELD), np.float32)
    if max(crop.shape) > MID * BOX:
        crop = _resize(crop, MID * BOX / max(crop.shape))  # big crops: work at 4x the final scale, it is cheaper
    crop = _thicken(crop)
    small = _resize(crop, BOX / max(crop.shape))
    return _centre(small / max(float(small.max()), 1e-6))  # MNIST strokes have a saturated core


def _resize(crop: np.ndarray, s: float) -> np.ndarray:
    """Scale by `s`, antialiased (area average) when shrinking; the longest side lands on a whole pixel count."""
    h, w = crop.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))
    resample = Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR
    return np.clip(np.asarray(Image.fromarray(crop).resize(size, resample)), 0.0, 1.0)


def _tight(crop: np.ndarray, level: float = 0.05) -> np.ndarray | None:
    """The crop cut to the rows and columns holding ink above `level`; None when there is none."""
    inked = crop > level
    rows = np.flatnonzero(inked.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(inked.any(0))
    return crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def stroke_width(crop: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink over its perimeter (total variation), ~w for long strokes."""
    gy = np.diff(crop, axis=0)[:, :-1]
    gx = np.diff(crop, axis=1)[:-1, :]
    perimeter = float(np.sqrt(gy * gy + gx * gx).sum())
    return 2.0 * float(crop.sum()) / max(perimeter, 1e-6)


def _thicken(crop: np.ndarray) -> np.ndarray:
    """Dilate strokes that would be thinner than MNIST's at 20-px scale (a fine pen on a big canvas).

    Thinning a marker's strokes the same way was tried and lost accuracy on canvas drawings, so thick
    strokes are left alone."""
    scale = BOX / max(crop.shape)
    width = stroke_width(crop) * scale
    if width >= STROKE_MIN:
        return crop
    grow = round((STROKE_TARGET - width) / (2.0 * scale))  # pixels to add on each side, at crop scale
    if grow < 1:
        return crop
    # A square structuring element: separable, so it costs the same at any size; after the 4x (or more)
    # area-average shrink that follows, its corners are not visible.
    padded = np.pad(crop, grow)
    return _tight(ndimage.maximum_filter1d(ndimage.maximum_filter1d(padded, 2 * grow + 1, 0), 2 * grow + 1, 1))


def _centre(small: np.ndarray) -> np.ndarray:
    """Paste `small` into a 28x28 field with its centre of mass at (14, 14), kept wholly inside the field."""
    h, w = small.shape
    total = float(small.sum())
    cy = float(small.sum(1) @ np.arange(h)) / total
    cx = float(small.sum(0) @ np.arange(w)) / total
    oy = min(max(round(CENTRE - cy), 0), FIELD - h)  # Python ints: np.clip on a scalar costs ~5 us a call
    ox = min(max(round(CENTRE - cx), 0), FIELD - w)
    out = np.zeros((FIELD, FIELD), np.float32)
    out[oy:oy + h, ox:ox + w] = small
    return out
