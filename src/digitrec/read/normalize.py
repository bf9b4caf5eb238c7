"""From any image to MNIST-like ink, and from a box of ink to the 28x28 image the model was trained on.

`preprocess` finds the ink (polarity, uneven background, threshold, the paper's ruled lines and boxes,
specks) at a working size of at most `WORK_SIDE` pixels a side (a long strip: more, see `image._fit`);
`to_mnist` frames a box of it by MNIST's own recipe (`digitrec.data.frame`): the longest side scaled to
20 px (antialiased), the centre of mass put at the centre of a 28x28 field, white ink on black in [0, 1].
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage

from digitrec.data.frame import crop_to_mnist
from digitrec.read.image import WORK_SIDE, decode
from digitrec.read.rules import EIGHT, dilate, remove_rules

BORDER = 0.04  # fraction of the short side sampled as the background ring
FLAT = 0.08  # border spread (10th to 90th percentile) under which the background is one grey level
# ...or flat paper that ink runs off the edge of: MOST of the border (half, so that its median is paper) within
# FLAT / 2 of its median, under STRAY beyond that on the paper's side (uneven paper strays to both sides), and
# 1 % or more of it 3 FLAT or further to the other side, as only ink is.
MOST, STRAY = 0.5, 0.05
DENSE = 0.18  # ink on more of the image than this (a tight crop) has the noise re-measured on the paper alone
# The image reaching REACH_RATIO times further from the border's paper on one side than the other, and at least
# INKY, is ink's side (shading on paper reaches a few tenths at most, and to both sides).
REACH_RATIO, INKY = 2.5, 0.3
REACH = 1.5  # how far below the border's median (in its paper-side spreads) the paper may still lie
MIN_CONTRAST = 0.1  # ink must differ from the paper by at least this much, or the image is blank
# Ink fainter than FAINT is a shadow, a blotch or paper texture when its sharpest edges take more than SOFT px to
# rise, or for fainter ink proportionally fewer, down to SHARP: a pen's edge takes about 3 px at working size,
# blurred or not, so the faintest ink must be that sharp to count.
FAINT, SOFT, SHARP = 0.3, 6.0, 4.0
SPECK = 0.02  # components under this fraction of the largest one are noise
# Noise (salt and pepper, film grain) rather than writing, when the ink that survives speck removal
# - takes SCATTERED or more pieces to make up FOUR_FIFTHS of its area (a line of ten digits, each broken in two,
#   takes a dozen at most; the evaluation sets' lines 8),
# - or its largest piece is under STAND_OUT times the 95th percentile of the MANY or more specks removed (a digit
#   on a dusty page is 60 times larger and more),
# - or MANY or more specks come with ink of which under CORE survives a one-pixel erosion (percolating noise is
#   threads of single pixels; written strokes, thin or dusty, keep 0.4 and more at working size), or FEW or more
#   do with ink that takes SEVERAL or more pieces to make up 80 % of it (a small image of noise is a few
#   threads; a dusty digit one piece).
# With MANY specks the strong ink alone is judged too: on a grey page salt and pepper can leave the paper
# between the specks weak ink, which joins them into pieces.
SCATTERED, FOUR_FIFTHS = 24, 0.8
# ...unless those pieces are written in rows: a long number (an account number of 32 digits, a page of
# figures) has as many pieces as noise, but they are ROW_TALL working px high or more (salt and pepper that
# survives speck removal: clumps of 2-6 px) and all but a few of them (IN_ROWS) share their mid-height
# with ROW_MATES or more of the others. Stripes pass that test too, but a printed pattern repeats at one step:
# pieces whose left (or top) edges follow each other at steps that differ by under REGULAR of their median are not
# writing (digits' own widths make those steps differ by about as much as the median step).
ROW_TALL, IN_ROWS, ROW_MATES, REGULAR = 10, 0.9, 2, 0.1
STAND_OUT, MANY, CORE = 10.0, 100, 0.2
FEW, SEVERAL = 30, 4
# Ink that stands out only from the paper's grain, not from its spread, is kept when the paper is squared: the
# median of most rows and columns is paper, of a few (the printed lines) far darker, so the medians' 98th
# percentile lies GRID_SKEW or more times further above their median than the 2nd below it (blurred noise: 1.4
# at most; the evaluation set's squared paper: mostly 2.5-45), or the medians repeat at the grid's step: their
# autocorrelation peaks GRID_PERIODIC or higher, past a dip as deep, at a lag of at most a third of the profile
# (small scans with a dense grid as dark as the ink: skew 1.3-2.4, peak 0.52-0.9; blurred noise: peak 0.35 at most).
GRID_SKEW = 2.5
GRID_PERIODIC = 0.45


class Ink(np.ndarray):
    """Float32 HxW ink at working size that remembers the input's (height, width), so boxes can map back,
    why it holds no ink when preprocessing set it aside (`rejected`, e.g. as noise), and the ink of each
    digit `segment` found (`pieces`, by input box): `to_mnist` then shows the model exactly the piece the
    segmenter rated, without a neighbour's strokes reaching into its box."""

    input_shape: tuple[int, int] | None
    rejected: str | None
    pieces: dict[tuple[int, int, int, int], np.ndarray]

    def __new__(cls, values: np.ndarray, input_shape: tuple[int, int] | None = None,
                rejected: str | None = None) -> Ink:
        obj = np.asarray(values, np.float32).view(cls)
        obj.input_shape = tuple(input_shape) if input_shape is not None else None
        obj.rejected = rejected
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        same = obj is not None and getattr(obj, "shape", None) == self.shape
        self.input_shape = getattr(obj, "input_shape", None) if same else None
        self.rejected = getattr(obj, "rejected", None) if same else None
        self.pieces = {}


def preprocess(image: Any, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ink float32 HxW in [0, 1] (1 = full ink, background 0) and the bool mask of ink that survives cleaning;
    when the image is noise, no ink, and the reason in the ink's `rejected`."""
    decoded = decode(image, name, max_side=WORK_SIDE)
    ink, mask, rejected = extract_ink(decoded.gray, rules=not decoded.transparent)  # a canvas has no printed lines
    return Ink(ink, decoded.input_shape, rejected), mask


def extract_ink(gray: np.ndarray, rules: bool = True) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Split grayscale (1 = white) into ink and background: polarity, flattening, threshold, noise, the
    paper's printed lines and boxes (unless `rules` is False), specks. The third value says why an image
    that has ink of some contrast gives none (noise), else None."""
    none = np.zeros(gray.shape, np.float32), np.zeros(gray.shape, bool)
    if min(gray.shape) < 3:  # a strip a pixel or two thin holds no digit (and has no neighbours to compare)
        return *none, None
    d, noise = _ink_signal(gray)
    top = _robust_max(d)
    grain = None
    if not _stands_out(top, noise):
        grain = _squared(gray, d, top, noise) if rules else None
        if grain is None:
            return *none, None
    # The stroke core's level: what full ink looks like in this image (pencil on paper may reach only 0.3).
    level = _quantiles(d[d > 0.5 * top], (0.75,))[0]
    floor = max(0.03, 3.0 * noise)
    # A grid as dark as the ink widens the spread past the ink's level: above the grain, its lines are ink until
    # `remove_rules` takes them out (a page with no grain at all is drawn, not scanned: a checkerboard, whose
    # squares would all be ink).
    if grain and floor >= level:
        floor = max(0.03, 3.0 * grain)
    if level < FAINT and _edge_width(d, level) > max(SHARP, SOFT * level / FAINT):
        return *none, None  # faint and soft: shading, not ink
    t = min(max(_otsu(d[::2, ::2], level), floor, 0.25 * level), 0.6 * level)
    weak, strong = d > max(floor, 0.5 * t), d > t
    labels, area, inked, keep = _components(weak, strong)
    rejected = _noise(labels, area, inked, keep)
    if rejected is None and np.count_nonzero(inked & ~keep) >= MANY:
        rejected = _noise(*_components(strong, strong))
    if rejected:
        return *none, rejected
    ruled = remove_rules(weak) if rules else weak  # not ink to read; what they leave are specks
    if ruled is not weak:
        weak, strong = ruled, strong & ruled
        labels, area, _, keep = _components(weak, strong)
    mask = weak if keep[1:].all() else keep[labels]
    ink = np.clip((d - floor) / max(level - floor, 1e-6), 0.0, 1.0)
    ink[~dilate(mask)] = 0.0
    return ink.astype(np.float32, copy=False), mask, None


def _squared(gray: np.ndarray, d: np.ndarray, top: float, noise: float) -> float | None:
    """The paper's grain (its noise sigma) when ink that does not stand out from the paper's spread (`noise`) is
    on squared paper, else None: the ink stands out from the grain (a grid's lines widen the spread, not the
    grain), and the rows and columns show printed lines (smooth blotches, such as blurred noise, have little grain
    too, but no lines)."""
    grain = _sigma(np.diff(gray[::2], axis=1), 0.0) / np.sqrt(2.0)  # neighbours' differences: lines show at edges
    if grain > noise / 2 or not _stands_out(top, grain):
        return None
    rows, cols = np.median(d, axis=1), np.median(d, axis=0)
    lined = min(_skew(rows), _skew(cols)) >= GRID_SKEW or min(_periodicity(rows), _periodicity(cols)) >= GRID_PERIODIC
    return grain if lined else None


def _periodicity(profile: np.ndarray) -> float:
    """How clearly `profile` repeats: the highest peak of its autocorrelation (1 at lag 0) at a lag of 3 to a
    third of its length, counted only as high as the dip before it is deep. Printed lines at one step give
    0.5-0.9; a smooth random profile falls away from lag 0 with no dip, or rises again only a little."""
    p = np.asarray(profile, np.float64) - float(np.mean(profile))
    n, energy = p.size, float(p @ p)
    if n < 12 or energy <= 0:
        return 0.0
    ac = np.correlate(p, p, "full")[n - 1:] / energy
    lags = np.arange(3, n // 3 + 1)
    peaks = lags[(ac[lags] >= ac[lags - 1]) & (ac[lags] >= ac[lags + 1])]
    if not peaks.size:
        return 0.0
    dips = np.minimum.accumulate(ac[1:])[peaks - 2]  # the lowest value at lags 1..s-1
    return max(0.0, float(np.max(np.minimum(ac[peaks], ac[peaks] - dips))))


def _stands_out(top: float, noise: float) -> bool:
    """Whether ink of strength `top` stands out from paper whose variation is `noise`."""
    return top >= max(MIN_CONTRAST, 8.0 * noise)


def _skew(values: np.ndarray) -> float:
    """How much further the 98th percentile lies above the median than the 2nd below it."""
    low, mid, high = _quantiles(values, (0.02, 0.5, 0.98))
    return (high - mid) / max(mid - low, 1e-3)


def _edge_width(d: np.ndarray, level: float) -> float:
    """How many pixels the ink takes to rise to its level at its sharpest edges (pen strokes: 2-5 at working
    size, even blurred; blotches and shadows on paper: 10 and more)."""
    rows = np.flatnonzero((d > 0.25 * level).any(1))
    cols = np.flatnonzero((d > 0.25 * level).any(0))
    box = d[max(rows[0] - 2, 0):rows[-1] + 3, max(cols[0] - 2, 0):cols[-1] + 3]
    gy, gx = np.gradient(ndimage.uniform_filter(box, 3))
    steepest = _quantiles(np.hypot(gx, gy)[box > 0.25 * level], (0.99,))[0]
    return level / max(steepest, 1e-6)


def _robust_max(d: np.ndarray) -> float:
    """The largest value that a whole 2x2 block reaches: a lone hot pixel (noise, JPEG speck) does not count."""
    if min(d.shape) < 2:
        return float(d.max())
    return float(np.minimum(np.minimum(d[1:, 1:], d[:-1, :-1]), np.minimum(d[1:, :-1], d[:-1, 1:])).max())


def _ink_signal(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """How far each pixel is from the local paper towards the ink's side (>0 = inky), and the noise sigma."""
    b = max(1, round(BORDER * min(gray.shape)))
    ring = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(), gray[:, :b].ravel(), gray[:, -b:].ravel()])
    lo, level, hi = _quantiles(ring, (0.1, 0.5, 0.9))
    if hi - lo <= FLAT or _ink_runs_off(ring, level):
        noise = _sigma(ring, level)
        if _dark_ink(gray[::2, ::2] - level, noise):
            return level - gray, noise
        return gray - level, noise
    # Uneven paper (shading, vignetting): subtract a large-scale estimate of it, first polarity-blind (median),
    # then from the paper's side of the distribution once the polarity is known.
    # The polarity-blind pass only feeds robust statistics of every second pixel, so it runs at half size.
    coarse, size = _coarse(gray)
    half = gray[::2, ::2]
    r = half - _upscale(percentile_filter(coarse, 50, size), half.shape)
    noise = _sigma(r[::2, ::2].ravel())
    dark = _reaches_further(half, level)
    if dark is None:
        dark = _dark_ink(r, noise)
    background = _upscale(percentile_filter(coarse, 80 if dark else 20, size), gray.shape)
    # Never darker (for dark ink) than the paper the border shows, mirrored about its median: inside a stroke
    # wider than the neighbourhoods, the percentile is ink, and the stroke would come out hollow.
    if dark:
        background = np.maximum(background, level - REACH * (hi - level) - 0.05)
    else:
        background = np.minimum(background, level + REACH * (level - lo) + 0.05)
    r = gray - background
    d = -r if dark else r
    grid = d[::4, ::4]
    if np.count_nonzero(grid >= 3.0 * noise) > DENSE * grid.size:
        for _ in range(2):  # the paper's own noise, without the ink that fills much of a tightly cropped digit
            paper = grid[grid < 3.0 * noise]
            if paper.size < 16:
                break
            noise = min(noise, _sigma(paper))
    return d, noise


def _reaches_further(gray: np.ndarray, level: float) -> bool | None:
    """Dark ink (True) or light (False) when the image reaches far (INKY) from the border's paper level on one
    side, REACH_RATIO times further than on the other, else None. Bold strokes that fill much of a tight crop
    make the local medians ink, which fools the local test; only ink reaches that far, shading does not."""
    lo, hi = _quantiles(gray, (0.02, 0.98))
    below, above = level - lo, hi - level
    if below >= INKY and below > REACH_RATIO * max(above, MIN_CONTRAST / 2):
        return True
    if above >= INKY and above > REACH_RATIO * max(below, MIN_CONTRAST / 2):
        return False
    return None


def _ink_runs_off(ring: np.ndarray, level: float) -> bool:
    """Whether the border is flat paper at `level` but for ink running off the edge (a digit cropped tight, a big
    digit on a canvas): most of it at that level, what is not almost all on one side of it, and some of that
    side far enough from the paper to be ink (uneven paper strays to both sides, or not far)."""
    n_above, n_below = np.count_nonzero(ring > level + FLAT / 2), np.count_nonzero(ring < level - FLAT / 2)
    if n_above + n_below > (1 - MOST) * ring.size or min(n_above, n_below) >= STRAY * ring.size:
        return False
    far = (ring < level - 3 * FLAT) if n_below > n_above else (ring > level + 3 * FLAT)
    return np.count_nonzero(far) >= 0.01 * ring.size


def _sigma(values: np.ndarray, centre: float | None = None) -> float:
    """Robust standard deviation: 1.4826 times the median absolute deviation from `centre` (default: median)."""
    if centre is None:
        centre = _quantiles(values, (0.5,))[0]
    return 1.4826 * _quantiles(np.abs(values - centre), (0.5,))[0]


def _quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Quantiles by partial sort, without interpolation (np.percentile costs several times more)."""
    values = values.ravel()
    ks = [min(values.size - 1, int(q * values.size)) for q in qs]
    part = np.partition(values, ks)
    return [float(part[k]) for k in ks]


def _dark_ink(r: np.ndarray, noise: float) -> bool:
    """Dark ink on light paper when more energy lies below the paper level than above it."""
    t = max(0.03, 3.0 * noise)
    return float(np.clip(-r - t, 0, None).sum()) >= float(np.clip(r - t, 0, None).sum())


def _coarse(gray: np.ndarray) -> tuple[np.ndarray, int]:
    """gray averaged over cells 1/24 of the short side, and the window (a third of the short side, in cells)
    over which a percentile of them estimates the paper."""
    h, w = gray.shape
    cell = max(1, min(h, w) // 24)
    small = (max(1, h // cell), max(1, w // cell))
    coarse = np.asarray(Image.fromarray(gray).resize(small[::-1], Image.Resampling.BOX))
    return coarse, max(3, min(small) // 3)


def _upscale(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A coarse grid smoothly (bilinearly) resized to `shape`."""
    return np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.Resampling.BILINEAR))


def percentile_filter(values: np.ndarray, q: float, size: int) -> np.ndarray:
    """scipy's percentile_filter(values, q, size=size, mode="nearest"), the same values several times faster
    on the small grids used here: every size x size window at once, one partial sort."""
    before, n = size // 2, size * size
    padded = np.pad(values, ((before, size - 1 - before),) * 2, mode="edge")
    windows = sliding_window_view(padded, (size, size)).reshape(*values.shape, n)
    rank = min(int(n * q / 100.0), n - 1)
    return np.partition(windows, rank, axis=-1)[..., rank]


def _otsu(values: np.ndarray, peak: float, bins: int = 64) -> float:
    """Otsu's threshold of `values` over [0, peak]: the split that maximises the between-class variance."""
    idx = np.clip((values.ravel() * (bins / peak)).astype(np.int64), 0, bins - 1)
    hist = np.bincount(idx, minlength=bins).astype(np.float64)
    centres = (np.arange(bins) + 0.5) * (peak / bins)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * centres)
    total, mean = w0[-1], m0[-1]
    w1 = total - w0
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros(bins)
    between[valid] = (mean * w0[valid] - total * m0[valid]) ** 2 / (w0[valid] * w1[valid])
    return float((np.argmax(between) + 1) * (peak / bins))


def _components(weak: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hysteresis plus speck removal: `weak`'s 8-connected labels, each label's area, which labels hold strong
    ink, and which to keep (those that do and are not tiny beside the largest; label 0, the background, never)."""
    labels, n = ndimage.label(weak, EIGHT)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    inked = np.bincount(labels[strong], minlength=n + 1) > 0
    inked[0] = False
    keep = inked.copy()
    if keep.any():
        keep &= area >= max(3, SPECK * area[keep].max(), 2e-5 * weak.size)
    return labels, area, inked, keep


def _noise(labels: np.ndarray, area: np.ndarray, inked: np.ndarray, keep: np.ndarray) -> str | None:
    """Why the components (`_components`' labels, areas, which hold strong ink, which survive speck removal) are
    noise and not writing, or None."""
    kept = area[keep]
    pieces = _pieces_to_cover(kept, FOUR_FIFTHS)
    if pieces >= SCATTERED and not _in_rows(labels, area, keep, pieces):
        return f"noise: the ink is scattered specks (its {pieces} largest make up only 80 % of it), not writing"
    specks = area[inked & ~keep & (area >= 3)]
    if specks.size < FEW or not kept.size:
        return None
    typical = _quantiles(specks, (0.95,))[0]
    if specks.size >= MANY and kept.max() < STAND_OUT * typical:
        return f"noise: {specks.size} specks and nothing that stands out from them (largest {kept.max()} px)"
    if specks.size < 2 * MANY and pieces < SEVERAL:
        return None
    mask = keep[labels]
    if np.count_nonzero(ndimage.binary_erosion(mask)) < CORE * np.count_nonzero(mask):
        return f"noise: {specks.size} specks and threads of ink a pixel wide, not strokes"
    return None


def _in_rows(labels: np.ndarray, area: np.ndarray, keep: np.ndarray, pieces: int) -> bool:
    """Whether the `pieces` largest kept components are writing set out in rows (see ROW_TALL): tall enough,
    not repeating at one step, and nearly all level with at least ROW_MATES of the others (their vertical
    spans cross its mid-height)."""
    largest = np.flatnonzero(keep)[np.argsort(area[keep])[::-1][:pieces]]
    boxes = ndimage.find_objects(labels, max_label=int(largest.max()))
    top = np.array([boxes[k - 1][0].start for k in largest])
    bottom = np.array([boxes[k - 1][0].stop for k in largest])
    if np.median(bottom - top) < ROW_TALL:
        return False
    if _repeats(np.array([boxes[k - 1][1].start for k in largest])) or _repeats(top):
        return False
    mid = (top + bottom) / 2
    mates = ((top[None, :] <= mid[:, None]) & (mid[:, None] < bottom[None, :])).sum(1) - 1
    return np.count_nonzero(mates >= ROW_MATES) >= IN_ROWS * pieces


def _repeats(edges: np.ndarray) -> bool:
    """Whether edges follow each other at one step (within REGULAR of it), as a printed pattern's do."""
    steps = np.diff(np.sort(edges))
    steps = steps[steps > 0]
    if steps.size < 3 or np.median(steps) < 3:  # a pixel or two apart: the jitter of a line's tops, not a period
        return False
    return np.quantile(steps, 0.9) - np.quantile(steps, 0.1) <= REGULAR * np.median(steps)


def _pieces_to_cover(areas: np.ndarray, share: float) -> int:
    """How many of the largest pieces (by area) it takes to make up `share` of their total area."""
    if areas.size == 0:
        return 0
    ordered = np.sort(areas)[::-1]
    return int(np.searchsorted(np.cumsum(ordered), share * ordered.sum())) + 1


def scale_of(ink: np.ndarray) -> tuple[float, float]:
    """Input pixels per ink pixel along (y, x): 1 unless `ink` was shrunk to the working size."""
    shape = getattr(ink, "input_shape", None)
    if not shape:
        return 1.0, 1.0
    return shape[0] / ink.shape[0], shape[1] / ink.shape[1]


def box_to_input(ink: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    """A working-size box [x0, x1) x [y0, y1) as (x, y, w, h) in input-image pixels, rounded outwards."""
    sy, sx = scale_of(ink)
    if (sy, sx) == (1.0, 1.0):
        return int(x0), int(y0), int(x1 - x0), int(y1 - y0)
    ix0, iy0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
    ix1, iy1 = int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy))
    return ix0, iy0, ix1 - ix0, iy1 - iy0


def box_to_work(ink: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """An input-image (x, y, w, h) as working-size [x0, x1) x [y0, y1), clipped to the ink; inverse of box_to_input."""
    x, y, w, h = (int(v) for v in box)
    sy, sx = scale_of(ink)
    x0, y0, x1, y1 = x, y, x + w, y + h
    if (sy, sx) != (1.0, 1.0):
        # box_to_input rounded outwards; the half-pixel shifts undo that exactly for the boxes it made
        x0, x1 = int(np.floor((x + 0.5) / sx + 0.5)), int(np.floor((x + w - 0.5) / sx + 0.5))
        y0, y1 = int(np.floor((y + 0.5) / sy + 0.5)), int(np.floor((y + h - 0.5) / sy + 0.5))
    rows, cols = ink.shape
    return max(0, x0), max(0, y0), min(cols, x1), min(rows, y1)


def to_mnist(ink: np.ndarray, box: tuple[int, int, int, int] | list[int]) -> np.ndarray:
    """The 28x28 float32 MNIST-style image of the ink inside `box` = (x, y, w, h) in input-image pixels."""
    piece = getattr(ink, "pieces", {}).get(tuple(int(v) for v in box))
    if piece is not None:
        return crop_to_mnist(piece)
    x0, y0, x1, y1 = box_to_work(ink, tuple(box))
    return crop_to_mnist(np.asarray(ink)[y0:y1, x0:x1])
