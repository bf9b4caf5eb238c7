"""Ruled lines, grid lines and boxes drawn on the paper, taken out of the ink before it is segmented.

Forms, lined and squared paper put long straight lines through and around the digits; left in, a box's
side reads as a 1 and a ruled line joins a digit's strokes into another digit. A rule here is a straight
run of ink at least `LONG` of the image's side along it that reaches well past the rest of the ink at
both ends (`PAST` of the rest's extent along it), thin for its length or beside the rest's strokes (`THIN`,
`BOLDER`), and a horizontal one is also much longer than the rest is tall (`ACROSS`). A digit's own long strokes (a 7's bar, a 4's or a 9's stem, a 2's foot) end about where
the digit does, so they stay. Only the rule's own thickness is taken: where a stroke crosses the rule or
lies along it, the ink is thicker and is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LONG = 0.5  # a rule runs at least this fraction of the image's side along it
PAST = 0.25  # ...reaches past the rest of the ink at both ends by this fraction of the rest's extent along it
ACROSS = 1.5  # ...and, when horizontal, is at least this many times as long as the rest is tall
THIN = 0.04  # ...and is thin: at most this fraction of its length thick...
BOLDER = 0.75  # ...or this fraction of the rest's stroke width (pens draw bolder than forms are printed)
CORNER = 4  # pixels: how near a box's sides come to its top's and bottom's ends
MIN_PAST = 3  # pixels: the least reach past the rest at each end
GAP = 2  # gaps of up to this many pixels along a rule (faint or broken printing) do not break it
TILT = 1  # rows either side a horizontal run may wander into (columns, for vertical ones): rules shot askew
SPECK = 0.1  # pieces of the rest under this fraction of its largest piece do not count for its extent
EIGHT = np.ones((3, 3), bool)


def remove_rules(mask: np.ndarray) -> np.ndarray:
    """`mask` without its rules; `mask` itself (the same object) when it has none.

    Horizontal rules go first, then vertical ones, then horizontal ones again: a box's side that the digit
    inside nearly spans still counts when both its ends meet the ends of rules already found (its corners).
    """
    if min(mask.shape) < 16 or not mask.any():
        return mask
    h, w = mask.shape
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    if x1 - x0 < _long(w) and y1 - y0 < _long(h):
        return mask  # no run of ink long enough
    ink = mask[y0:y1, x0:x1]  # rules are long for the image, but only the ink's box holds them
    longs = (_long(w), _long(h))
    rows, cols = _candidates(ink, longs[0]), _candidates(ink.T, longs[1]).T
    if not (rows.any() or cols.any()):
        return mask
    found: list[Segment] = []
    out = _remove(ink, True, found, longs, rows, cols)
    n = len(found)
    out = _remove(out, False, found, longs)
    if len(found) > n:
        out = _remove(out, True, found, longs)
    if out is ink:
        return mask
    kept = mask.copy()
    kept[y0:y1, x0:x1] = out
    return kept


def _long(side: int) -> int:
    """The least length of a rule along an image side of `side` pixels."""
    return max(8, int(LONG * side))


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each True pixel the length of the horizontal run of True pixels holding it (0 elsewhere)."""
    h, w = mask.shape
    flat = np.pad(mask, ((0, 0), (1, 1))).ravel()
    starts = flat & ~np.roll(flat, 1)
    ids = np.cumsum(starts)
    lengths = np.bincount(ids[flat], minlength=int(ids[-1]) + 1)
    return np.where(flat, lengths[ids], 0).reshape(h, w + 2)[:, 1:-1]


def _candidates(m: np.ndarray, long: int) -> np.ndarray:
    """Ink in horizontal runs at least `long` pixels long, short gaps bridged, a little tilt allowed."""
    bridged = _bridge(_tilt(m))
    rows = np.flatnonzero(np.count_nonzero(bridged, axis=1) >= long)  # only these can hold so long a run
    out = np.zeros_like(m)
    if rows.size:
        out[rows] = m[rows] & (run_lengths(bridged[rows]) >= long)
    # a band of rows this deep is a bold stroke, not a thin rule (whose band is its thickness and the tilt)
    deep = run_lengths(out.any(axis=1)[None])[0] > THIN * long + 2 * TILT + 1
    out[deep] = False
    return out


def _remove(mask: np.ndarray, horizontal: bool, found: list[Segment], longs: tuple[int, int],
            rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """`mask` without the rules of one direction (rows when `horizontal`, else columns); adds them to `found`.
    `longs`: the least lengths of horizontal and vertical rules; `rows` and `cols`: their candidates, if known."""
    m = mask if horizontal else mask.T
    rows = _candidates(mask, longs[0]) if rows is None else rows
    cols = _candidates(mask.T, longs[1]).T if cols is None else cols
    along, across = (rows, cols) if horizontal else (cols.T, rows.T)  # across: rules too, perhaps, so not the rest
    if not along.any():
        return mask
    thick = run_lengths(m.T).T  # how thick the ink is across the rule at each pixel
    rest = _rest(m & ~_grow(along | across), _mode(thick[along]) + 2 * TILT + 1)
    if rest is None:
        return mask
    (r0, r1, c0, c1), stroke = rest
    labels, n = ndimage.label(along, EIGHT)
    rule = np.zeros(n + 1, bool)
    past = max(MIN_PAST, PAST * (c1 - c0))
    ends = [seg for seg in found if seg.horizontal != horizontal]
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        seg = Segment(horizontal, sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
        width = _mode(thick[sl][labels[sl] == i])
        if any(seg.same(f) for f in found) or width > max(THIN * seg.length, BOLDER * stroke):
            continue
        reaches = (seg.x0 <= c0 - past and seg.x1 >= c1 + past
                   and (not horizontal or seg.length >= ACROSS * (r1 - r0)))
        if reaches or seg.boxed(ends):
            rule[i] = True
            found.append(seg)
    if not rule.any():
        return mask
    lines = rule[labels]
    drop = lines & (thick <= _mode(thick[lines]) + 1)
    kept = m & ~drop
    return kept if horizontal else kept.T


@dataclass(frozen=True)
class Segment:
    """A rule found: its direction and its box, rows [y0, y1) x columns [x0, x1) along it (transposed for
    vertical rules, so x is always along the rule)."""

    horizontal: bool
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def length(self) -> int:
        return self.x1 - self.x0

    def same(self, other: Segment) -> bool:
        """The same rule (found on the first horizontal pass, seen again on the last)."""
        return (self.horizontal, self.y0, self.x0) == (other.horizontal, other.y0, other.x0)

    def boxed(self, across: list[Segment]) -> bool:
        """Both ends meet an end of a rule across it, as a box's side meets its top and bottom."""
        d = max(CORNER, self.y1 - self.y0)

        def meets(x: int) -> bool:  # a rule across this one at x (its rows are our columns), ending at our rows
            return any(a.y0 - d <= x <= a.y1 + d and (abs(a.x0 - self.y0) <= d or abs(a.x1 - self.y1) <= d)
                       for a in across)

        return meets(self.x0) and meets(self.x1)


def _mode(values: np.ndarray) -> int:
    """The commonest value: a rule's own thickness, whatever crosses it or lies along it."""
    return int(np.argmax(np.bincount(values)))


def _rest(m: np.ndarray, fragment: int) -> tuple[tuple[int, int, int, int], float] | None:
    """What is left when the rule candidates are taken out: the rows and columns [r0, r1) x [c0, c1) it spans
    and its strokes' width (the median over its pixels of the shorter run through each); None when empty.

    Specks do not count, nor pieces no thicker than `fragment` pixels: the short ends and broken bits of rules.
    """
    labels, n = ndimage.label(m, EIGHT)
    if n == 0:
        return None
    area = np.bincount(labels.ravel(), minlength=n + 1)
    area[0] = 0
    keep = area >= SPECK * area.max()
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        keep[i] &= min(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) > fragment
    if not keep[1:].any():
        return None
    inside = keep[labels]
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    stroke = float(np.median(np.minimum(run_lengths(inside), run_lengths(inside.T).T)[inside]))
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1), stroke


def _bridge(m: np.ndarray) -> np.ndarray:
    """Gaps of up to GAP pixels along the rows filled."""
    left, right = np.zeros_like(m), np.zeros_like(m)
    for k in range(1, GAP + 1):
        left[:, k:] |= m[:, :-k]
        right[:, :-k] |= m[:, k:]
    return m | (left & right)


def _tilt(m: np.ndarray) -> np.ndarray:
    """Each row ORed with the TILT rows above and below it."""
    out = m.copy()
    for k in range(1, TILT + 1):
        out[k:] |= m[:-k]
        out[:-k] |= m[k:]
    return out


def _grow(m: np.ndarray) -> np.ndarray:
    """3x3 dilation by shifted ORs."""
    out = _tilt(m)
    grown = out.copy()
    grown[:, 1:] |= out[:, :-1]
    grown[:, :-1] |= out[:, 1:]
    return grown
