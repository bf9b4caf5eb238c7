"""Ruled lines, grid lines and boxes drawn on the paper, taken out of the ink before it is segmented.

Forms, lined and squared paper put long straight lines through and around the digits; left in, a box's
side reads as a 1 and a ruled line joins a digit's strokes into another digit. A rule here is a straight
run of ink at least `LONG` of the image's side along it that reaches well past the rest of the ink at
both ends (`PAST` of the rest's extent along it), thin for its length or beside the rest's strokes (`THIN`,
`BOLDER`), and a horizontal one is also much longer than the rest is tall (`ACROSS`). A digit's own long
strokes (a 7's bar, a 4's or a 9's stem, a 2's foot) end about where the digit does, so they stay. Only the
rule's own thickness is taken: where a stroke crosses the rule or lies along it, the ink is thicker and is
kept. Printed boxes are found apart (`_remove_boxes`): four
straight sides meeting at corners around ink that does not touch them.
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
BOX_LONG = 0.2  # a box's side runs at least this fraction of the image's side along it...
BOX_DEEP = 0.25  # ...and is at most this fraction of its length thick
STRAIGHT = 0.9  # each of its sides is straight for this fraction of the box's width or height
MIN_INSIDE = 1.0  # a box holds at least this many ink pixels per row of its inside
MAX_SIDES = 64  # more straight runs than this in either direction are a texture, not boxes (the search is cubic)
CORNER = 4  # pixels: how near a box's sides come to its top's and bottom's ends
MIN_PAST = 3  # pixels: the least reach past the rest at each end
COVER = 0.75  # pieces of ink in the same rows that cover this fraction of their span are one rule, broken
GRID_MIN = 3  # rules of one direction evenly spaced that make out the lines of squared or lined paper
GAP = 2  # gaps of up to this many pixels along a rule (faint or broken printing) do not break it
TILT = 1  # rows either side a horizontal run may wander into (columns, for vertical ones): rules shot askew
SPECK = 0.1  # pieces of the rest under this fraction of its largest piece do not count for its extent
EIGHT = np.ones((3, 3), bool)  # 8-connectivity
# An image under MIN_SIDE px both ways (MNIST's own 28x28) holds a digit alone: its strokes are as long for the
# image as a rule would be (a 4's stem, a 7's bar reach past the rest), and no form is printed that small.
MIN_SIDE = 32


def remove_rules(mask: np.ndarray) -> np.ndarray:
    """`mask` without its printed boxes and rules; `mask` itself (the same object) when it has none.

    Boxes go first; then horizontal rules, vertical ones, and horizontal ones again: a rule that the digit
    nearly spans still counts when both its ends meet the ends of rules already found (a box's corners).
    """
    if min(mask.shape) < 16 or max(mask.shape) < MIN_SIDE or not mask.any():
        return mask
    h, w = mask.shape
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    if x1 - x0 < _long(w, BOX_LONG) and y1 - y0 < _long(h, BOX_LONG):
        return mask  # no run of ink long enough
    ink = mask[y0:y1, x0:x1]  # rules are long for the image, but only the ink's box holds them
    spans = (_spans(ink), _spans(ink.T))  # shared by the boxes' search and the rules' while nothing is removed
    out = _remove_boxes(ink, (_long(w, BOX_LONG), _long(h, BOX_LONG)), spans)
    if out is not ink:
        spans = (_spans(out), _spans(out.T))
    longs = (_long(w), _long(h))
    rows, cols = _candidates(out, longs[0], spans=spans[0]), _candidates(out.T, longs[1], spans=spans[1]).T
    if not (rows.any() or cols.any()):
        return mask if out is ink else _paste(mask, out, y0, x0)
    found: list[Segment] = []
    before = out
    out = _remove(out, True, found, longs, rows, cols)
    n = len(found)
    out = _remove(out, False, found, longs, *((rows, cols) if out is before else ()))
    verticals = [seg for seg in found if not seg.horizontal]
    periods = {False: _period(verticals)}
    if len(found) > n:  # squared paper: its horizontal lines need not be much longer than the digit is tall
        out = _remove(out, True, found, longs, squared=periods[False] is not None)
    lines = {True: [seg for seg in found if seg.horizontal], False: verticals}
    periods[True] = _period(lines[True])
    for h in (True, False):
        period = periods[h]
        if period is None and periods[not h] is not None and lines[h]:  # squared: the same step both ways
            period = ((lines[h][0].y0 + lines[h][0].y1) / 2, periods[not h][1])
        if period is not None:
            out = _clear_bands(out, period, max(seg.y1 - seg.y0 for seg in lines[h] or lines[not h]), h)
    return mask if out is ink else _paste(mask, out, y0, x0)


def _period(rules: list[Segment]) -> tuple[float, float] | None:
    """(first, step) of the lines of squared or lined paper when GRID_MIN or more `rules` of one direction lie
    evenly spaced (some lines perhaps missed), fitted by least squares so the step holds across the page; None
    when they do not (the rules of a form)."""
    if len(rules) < GRID_MIN:
        return None
    ys = np.sort([(r.y0 + r.y1) / 2 for r in rules])
    centres = np.array([part.mean() for part in np.split(ys, np.flatnonzero(np.diff(ys) > CORNER) + 1)])
    if centres.size < GRID_MIN:
        return None
    steps = np.diff(centres)
    step = float(steps.min())  # lines missed make some steps multiples of it
    if step < 4 or np.any(np.abs(steps - step * np.round(steps / step)) > CORNER / 2):
        return None
    k = np.round((centres - centres[0]) / step)
    step, first = np.polyfit(k, centres, 1)
    return float(first), float(step)


def _band_rows(height: int, period: tuple[float, float], deep: int) -> np.ndarray:
    """Which of `height` rows lie in the bands, `deep` rows deep, of lines `period` = (first, step) apart."""
    first, step = period
    band = np.zeros(height, bool)
    for c in np.arange(first % step, height, step):
        band[max(0, round(c - deep / 2)): round(c + deep / 2) + 1] = True
    return band


def _clear_bands(mask: np.ndarray, period: tuple[float, float], deep: int, horizontal: bool) -> np.ndarray:
    """`mask` without the thin ink along every line of squared or lined paper, lines `period` = (first, step)
    apart in bands `deep` rows deep (the rules' thickness and tilt): where a bold digit crosses a grid line, the
    line's pieces between the digit and the paper's edge are too short to be found as rules, and would be read
    as strokes of the digit. Only ink no thicker across the band than the band itself goes."""
    m = mask if horizontal else mask.T
    thin = run_lengths(m.T).T <= deep  # a rule's own thickness varies along it: up to its band's depth
    drop = thin & _band_rows(m.shape[0], period, deep)[:, None]
    if not drop.any():
        return mask
    kept = m & ~drop
    return kept if horizontal else kept.T


def _paste(mask: np.ndarray, part: np.ndarray, y0: int, x0: int) -> np.ndarray:
    """A copy of `mask` with `part` written over it at (y0, x0)."""
    out = mask.copy()
    out[y0: y0 + part.shape[0], x0: x0 + part.shape[1]] = part
    return out


def _long(side: int, fraction: float = LONG) -> int:
    """The least length of a rule (or a box's side) along an image side of `side` pixels."""
    return max(8, int(fraction * side))


def _segments(candidates: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The 8-connected pieces of `candidates` as boxes (y0, y1, x0, x1)."""
    labels, _ = ndimage.label(candidates, EIGHT)
    return [(sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) for sl in ndimage.find_objects(labels)]


def _remove_boxes(m: np.ndarray, longs: tuple[int, int], spans: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`m` without the printed boxes around its digits (the same object when it has none).

    A box is two horizontal and two vertical runs, each at least BOX_LONG of the image's side, meeting at
    four corners, with ink inside it that does not touch it, and nothing of the frame's own ink going on
    outside: it may be as bold as the pen and the digit may nearly fill it, which the rules' tests would not
    allow. A digit's loop (a square 0, an 8's) fails one or the other and stays.
    """
    rows = _candidates(m, longs[0], BOX_DEEP, spans[0])
    if np.count_nonzero(np.diff(rows.any(axis=1).astype(np.int8), prepend=0) == 1) < 2:
        return m  # a box has a top and a bottom
    cols = _candidates(m.T, longs[1], BOX_DEEP, spans[1]).T
    if not cols.any():
        return m
    hs, vs = _segments(rows), _segments(cols.T)  # hs: (y0, y1, x0, x1); vs, transposed: (x0, x1, y0, y1)
    if len(hs) > MAX_SIDES or len(vs) > MAX_SIDES:
        return m
    drop = np.zeros_like(m)
    labels = None
    for top in hs:
        for bottom in hs:
            d = CORNER + max(top[1] - top[0], bottom[1] - bottom[0])  # a corner's slack: the frame's thickness
            if bottom[0] <= top[1] or abs(top[2] - bottom[2]) > d or abs(top[3] - bottom[3]) > d:
                continue
            sides = [v for v in vs if abs(v[2] - top[0]) <= d and abs(v[3] - bottom[1]) <= d]
            left = [v for v in sides if abs(v[0] - top[2]) <= d]
            right = [v for v in sides if abs(v[1] - top[3]) <= d]
            if not (left and right) or left[0] == right[-1]:
                continue
            l, r = left[0], right[-1]
            if min(top[3] - top[2], bottom[3] - bottom[2]) < STRAIGHT * (r[1] - l[0]) or \
                    min(l[3] - l[2], r[3] - r[2]) < STRAIGHT * (bottom[1] - top[0]):
                continue  # a side that is straight for only part of the way: a round digit, not a box
            frame = np.zeros_like(m)
            for y0, y1, x0, x1 in (top, bottom):
                frame[y0:y1, x0:x1] |= rows[y0:y1, x0:x1]
            for x0, x1, y0, y1 in (l, r):
                frame[y0:y1, x0:x1] |= cols[y0:y1, x0:x1]
            if labels is None:
                labels, _ = ndimage.label(m, EIGHT)
            attached = np.isin(labels, np.unique(labels[frame]))  # the ink the frame is part of
            inside = (labels > 0) & ~attached
            inside[:top[1]] = inside[bottom[0]:] = False
            inside[:, :l[1]] = inside[:, r[0]:] = False
            attached[max(0, top[0] - d): bottom[1] + d, max(0, l[0] - d): r[1] + d] = False
            if attached.any() or np.count_nonzero(inside) < MIN_INSIDE * (bottom[0] - top[1]):
                continue  # strokes go on out of it, or nothing apart from it inside: a digit's loop (an 8's, a 0's)
            drop |= frame
    if not drop.any():
        return m
    # only the frame's own thickness (where a stroke touches it, the ink is thicker and stays): its top and
    # bottom first, then its sides, whose ends (the corners) are as thin as the sides once those are gone
    across = run_lengths(m.T).T
    top_bottom = drop & rows
    out = m & ~(top_bottom & (across <= _mode(across[top_bottom]) + 1)) if top_bottom.any() else m
    sides = drop & out & ~(rows & ~cols)  # what is left of the frame but the top and bottom kept for a stroke
    if sides.any():
        across = run_lengths(out)
        out = out & ~(sides & (across <= _mode(across[sides]) + 1))
    # Where blur left the frame a pixel thicker than its commonest thickness, a piece of it stayed, cut off from all
    # else (left in, a side's piece reads as a 1 beside the digit): pieces lying wholly in the frame's band go.
    labels, n = ndimage.label(out, EIGHT)
    return out & _reaching_out(labels, n, dilate(drop))[labels]


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each True pixel the length of the horizontal run of True pixels holding it (0 elsewhere)."""
    h, w = mask.shape
    padded = np.zeros((h, w + 1), bool)  # a False column closes every row's last run
    padded[:, :w] = mask
    flat = padded.ravel()
    starts = flat.copy()
    starts[1:] &= ~flat[:-1]
    ids = np.cumsum(starts, dtype=np.int32)
    lengths = np.bincount(ids[flat], minlength=int(ids[-1]) + 1)
    return np.where(flat, lengths[ids], 0).reshape(h, w + 1)[:, :w]


def _in_long_runs(m: np.ndarray, long: int) -> np.ndarray:
    """Whether each pixel lies in a horizontal run of at least `long` True pixels: windows of `long` wholly
    inked, found by one running sum, and the pixels any of them covers, by another (3x run_lengths' speed)."""
    rows, width = m.shape
    if width < long:
        return np.zeros_like(m)
    total = np.zeros((rows, width + 1), np.int32)
    np.cumsum(m, axis=1, out=total[:, 1:])
    full = (total[:, long:] - total[:, :-long]) == long  # the window starting at each column is all ink
    starts = np.zeros((rows, full.shape[1] + 1), np.int32)
    np.cumsum(full, axis=1, out=starts[:, 1:])
    col = np.arange(width)
    return starts[:, np.minimum(col, width - long) + 1] > starts[:, np.maximum(0, col - long + 1)]


def _spans(m: np.ndarray) -> np.ndarray:
    """`m` with short gaps along its rows bridged and a row of tilt allowed: where a rule's run may go."""
    return _bridge(_tilt(m))


def _candidates(m: np.ndarray, long: int, deep: float = THIN, spans: np.ndarray | None = None) -> np.ndarray:
    """Ink in horizontal runs at least `long` pixels long, short gaps bridged, a little tilt allowed, in bands
    of rows at most `deep` times `long` deep (and the tilt). `spans`: `_spans(m)`, when already known."""
    bridged = _spans(m) if spans is None else spans
    rows = np.flatnonzero(np.count_nonzero(bridged, axis=1) >= long)  # only these can hold so long a run
    out = np.zeros_like(m)
    if not rows.size:
        return out
    inked = m[rows] & _in_long_runs(bridged[rows], long)
    out[rows] = inked
    # A band of rows deeper than `deep` times its own length is a bold stroke, not a thin rule (whose band is its
    # thickness and the tilt). Its own length, not the least a rule may have: on a small scan a rule printed 2 px
    # thick, blurred and JPEG-compressed, takes 4-5 px of the mask, and runs the whole width.
    banded = out.any(axis=1)
    edges = np.flatnonzero(np.diff(banded.astype(np.int8), prepend=0, append=0))
    if edges.size:
        runs = np.zeros(m.shape[0], np.int64)
        runs[rows] = run_lengths(inked).max(axis=1)
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a > deep * max(long, int(runs[a:b].max())) + 2 * TILT + 1:
                out[a:b] = False
    return out


def _remove(mask: np.ndarray, horizontal: bool, found: list[Segment], longs: tuple[int, int],
            rows: np.ndarray | None = None, cols: np.ndarray | None = None, squared: bool = False) -> np.ndarray:
    """`mask` without the rules of one direction (rows when `horizontal`, else columns); adds them to `found`.
    `longs`: the least lengths of horizontal and vertical rules; `rows` and `cols`: their candidates, if known;
    `squared`: the paper is squared (its vertical lines are evenly spaced), so horizontal rules need not be
    ACROSS times as long as the rest is tall; nor need they when the candidates themselves are evenly spaced."""
    m = mask if horizontal else mask.T
    rows = _candidates(mask, longs[0]) if rows is None else rows
    cols = _candidates(mask.T, longs[1]).T if cols is None else cols
    along, across = (rows, cols) if horizontal else (cols.T, rows.T)  # across: rules too, perhaps, so not the rest
    if not along.any():
        return mask
    thick = np.zeros(m.shape, np.int32)  # how thick the ink is across the rule, in the columns rules cross
    crossed = along.any(axis=0)
    thick[:, crossed] = run_lengths(m[:, crossed].T).T
    labels, n = ndimage.label(along, EIGHT)
    slices = ndimage.find_objects(labels)
    segs = [Segment(horizontal, sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) for sl in slices]
    band = np.zeros(m.shape, bool)  # the rows and columns that the candidates run along: where rules lie...
    band[along.any(axis=1)] = True
    band[:, across.any(axis=0)] = True
    period = _period(segs)
    if period is not None:  # ...and on lined or squared paper every line of their spacing (those a digit hides)
        band[_band_rows(m.shape[0], period, max(seg.y1 - seg.y0 for seg in segs))] = True
    paper = squared or period is not None  # lined or squared paper: rules need not be long beside the digit
    fragment = _mode(thick[along]) + 2 * TILT + 1
    rest = _rest(m & ~dilate(along | across), fragment, dilate(band))
    if rest is None:  # all of the ink on candidates (a 1 along a grid line, split into slivers): the ink thicker
        # than the rules is the rest
        rest = _rest(m & (_thickness(m) > fragment), 0, np.zeros_like(band))
    if rest is None:
        return mask
    (r0, r1, c0, c1), inside = rest
    stroke: float | None = None
    rule = np.zeros(n + 1, bool)
    past = max(MIN_PAST, PAST * (c1 - c0))
    ends = [seg for seg in found if seg.horizontal != horizontal]
    def reaches(line: Segment) -> bool:  # past the rest at both ends (and, horizontal, long beside it)
        return (line.x0 <= c0 - past and line.x1 >= c1 + past
                and (not horizontal or paper or line.length >= ACROSS * (r1 - r0)))

    for i, (seg, line, sl) in enumerate(zip(segs, _collinear(segs), slices), start=1):
        if not (reaches(seg) or reaches(line) or seg.boxed(ends)) or any(seg.same(f) for f in found):
            continue
        width = _mode(thick[sl][labels[sl] == i])
        if width > THIN * seg.length:
            stroke = _stroke(inside) if stroke is None else stroke
            if width > BOLDER * stroke:
                continue
        rule[i] = True
        found.append(seg)
    if not rule.any():
        return mask
    lines = rule[labels]
    drop = lines & (thick <= _mode(thick[lines]) + 1)
    kept = m & ~drop
    return kept if horizontal else kept.T


def _collinear(segs: list[Segment]) -> list[Segment]:
    """For each segment, the line it is part of: the span of the segments in the same rows (their row ranges
    overlapping) when they cover COVER of it, else the segment itself. A grid's rule is cut into segments where
    the printing breaks for more than GAP pixels or a bold stroke crosses it; whole, it reaches past the digit."""
    out = list(segs)
    order = sorted(range(len(segs)), key=lambda k: segs[k].y0)
    start = 0
    while start < len(order):
        end, bottom = start + 1, segs[order[start]].y1
        while end < len(order) and segs[order[end]].y0 < bottom:
            bottom = max(bottom, segs[order[end]].y1)
            end += 1
        group = [segs[k] for k in order[start:end]]
        if len(group) > 1:
            line = Segment(group[0].horizontal, min(g.y0 for g in group), bottom,
                           min(g.x0 for g in group), max(g.x1 for g in group))
            covered = np.zeros(line.length, bool)
            for g in group:
                covered[g.x0 - line.x0:g.x1 - line.x0] = True
            if np.count_nonzero(covered) >= COVER * line.length:
                for k in order[start:end]:
                    out[k] = line
        start = end
    return out


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


def _rest(m: np.ndarray, fragment: int, band: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """What is left when the rule candidates are taken out: the rows and columns [r0, r1) x [c0, c1) it spans
    and its pixels; None when empty.

    Specks do not count, nor pieces no thicker than `fragment` pixels, nor pieces wholly inside `band` (the
    rows and columns the candidates run along): the short ends and broken bits of rules, and on squared
    paper the crosses and corners of grid lines that a bold digit or a break in the printing cut off.
    """
    labels, n = ndimage.label(m, EIGHT)
    if n == 0:
        return None
    area = np.bincount(labels.ravel(), minlength=n + 1)
    area[0] = 0
    keep = (area >= SPECK * area.max()) & _reaching_out(labels, n, band)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        keep[i] &= min(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) > fragment
    if not keep[1:].any():
        return None
    inside = keep[labels]
    # its extent leaves out rules' thin tails in the band still joined to a digit that a rule crosses
    tails = inside & band
    span = inside & ~(tails & (_thickness(inside) <= fragment - 2 * TILT)) if tails.any() else inside
    if not span.any():
        span = inside
    rows, cols = np.flatnonzero(span.any(1)), np.flatnonzero(span.any(0))
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1), inside


def _reaching_out(labels: np.ndarray, n: int, band: np.ndarray) -> np.ndarray:
    """For each of the `n` labels (and the background, 0), whether any of its pixels lies outside `band`."""
    return np.bincount(labels[~band], minlength=n + 1) > 0


def _stroke(ink: np.ndarray) -> float:
    """The strokes' width: the median over the ink's pixels of the shorter run through each."""
    return float(np.median(_thickness(ink)[ink]))


def _thickness(mask: np.ndarray) -> np.ndarray:
    """For each pixel of `mask` the shorter of its horizontal and vertical runs: a stroke's or a rule's width."""
    return np.minimum(run_lengths(mask), run_lengths(mask.T).T)


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


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation by shifted ORs (several times faster than scipy's for this one case)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out
