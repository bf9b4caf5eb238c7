"""One line of digits to boxes, left to right: connected components, the pieces of one digit merged,
specks and dashes dropped, touching digits split where the classifier likes the pieces best.

Sizes are relative to the line height (the median height of the big components), so the same rules
hold for a 28-px scan and a 1000-px photo.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.errors import DigitrecError
from digitrec.data.frame import crop_to_mnist
from digitrec.read.normalize import EIGHT, Ink, box_to_input, scale_of

Score = Callable[[list[np.ndarray]], np.ndarray]  # 28x28 crops -> probabilities [N, 10]
Count = Callable[[np.ndarray], int | None]  # the ink of a line's digits -> how many digits it holds (None: unsure)

TINY = 0.02  # components under this fraction of the largest are noise
SPECK = 0.15  # groups under this fraction of the median group area, and short, are specks
SHORT = 0.35  # groups shorter than this fraction of the line height are dashes, dots or underlines
WIDE = 0.9  # groups wider than this times the line height may be several touching digits
LOOSE_WIDE = 0.5  # ...or narrower ones ("11", "81"), when the line reader counts more digits than the cuts allow
MAX_PIECES = 5  # even splits are proposed into 2 to this many pieces
MAX_ASPECT = 1.3  # no piece of a cut group is wider than this times the line height...
LOOSE_ASPECT = 2.0  # ...unless the line reader counts more digits than pieces that narrow and likely can make
MAX_CANDIDATES = 12  # cut columns considered per wide group...
CANDIDATES_PER_H = 2.0  # ...and per line height of its width
BEND = 0.2  # a cut path may wander this many line heights either side of its start column
STEP = 0.02  # cost of each diagonal step of a cut path (straight when nothing is in the way)
CUT_COST = 0.6  # log-score cost of a cut: this times the ink it crosses over the ink of a typical column
JOIN_COST = 0.3  # log-score cost of joining pieces across a real gap...
GAP_COST = 8.0  # ...plus this per line height of gap...
TALL_JOIN_COST = 0.5  # ...plus this when both sides already span the line
MAX_JOIN = 1.2  # joins costlier than this are not even considered (a clear gap: two digits)...
LOOSE_JOIN = 3.0  # ...unless the line reader counts fewer digits than the pieces could make without them
HOPELESS = -3.0  # pieces whose log prior is below this are not worth asking the classifier about
CUT_ROWS = 60  # cut paths through groups taller than twice this are searched on a pooled grid
ATTACH_GAP = 0.1  # a short piece this close to a digit's top (in line heights) is part of it
WORK_LINE_H = 36  # lines at least twice this high (working px) are segmented at a size where they are under it
MIN_HEIGHT_PX = 8  # no legible digit is shorter than this many input pixels: smaller groups are specks of noise
ROW_GAP = 0.1  # digit-sized pieces whose rows come within this many line heights of each other share a row
STACK_GAP = 0.4  # pieces one above the other this many line heights apart or less may be one digit's...
ROW_STACK_GAP = 0.2  # ...but only this close when rows are sought (a row's digits over the next row's are further)


@dataclass(frozen=True)
class Box:
    """A digit's box in input-image pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        """[x, y, w, h] as plain ints (JSON-ready, whatever numpy type the fields hold)."""
        return [int(self.x), int(self.y), int(self.w), int(self.h)]


@dataclass
class _Group:
    """Components taken as one digit (or several touching ones): a half-open working-size box and labels."""

    x0: int
    x1: int
    y0: int
    y1: int
    area: int
    labels: list[int]

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def union(self, other: _Group) -> _Group:
        return _Group(min(self.x0, other.x0), max(self.x1, other.x1), min(self.y0, other.y0),
                      max(self.y1, other.y1), self.area + other.area, self.labels + other.labels)


@dataclass
class Piece:
    """One digit of a line: its box in input pixels, the 28x28 image the classifier saw and, when a classifier
    rated it, its ten probabilities (so the reader need not classify it again)."""

    box: Box
    crop: np.ndarray
    probs: np.ndarray | None


def segment(ink: np.ndarray, mask: np.ndarray, score: Score | None = None) -> list[Box]:
    """Boxes of the digits in one line, left to right, in input-image pixels; `score` rates candidate pieces."""
    return [piece.box for piece in segment_pieces(ink, mask, score)]


def segment_pieces(
    ink: np.ndarray, mask: np.ndarray, score: Score | None = None, count: Count | None = None
) -> list[Piece]:
    """The digits of one line, left to right, with their 28x28 crops and (given `score`) probabilities: the
    first reading of `segment_readings`."""
    return segment_readings(ink, mask, score, count)[0]


def segment_readings(
    ink: np.ndarray, mask: np.ndarray, score: Score | None = None, count: Count | None = None
) -> tuple[list[Piece], list[Piece] | None]:
    """The digits of one line, left to right, with their 28x28 crops and (given `score`) probabilities.

    Components become groups (stacked pieces merged, specks and dashes dropped); wide groups are cut into
    atoms along candidate cut paths; then every run of neighbouring atoms that could be one digit is rated
    (classifier log-probability + shape prior - cost of the cut or of the gap it bridges) and the best
    left-to-right path wins, so broken digits are joined and touching ones split by the same rule. The
    classifier sees each candidate once, in at most two batches, and only where it can change the answer;
    without `score`, gaps are never bridged. Given `count` (and `score`), the best path with as many digits
    as `count` says the line holds wins, when there is one; when the cuts allow too few digits, the widest
    groups kept whole (down to LOOSE_WIDE line heights) are cut too: two touching 1s are narrower than one
    wide digit; and if that is still too few, costly cuts and pieces up to LOOSE_ASPECT line heights wide are
    rated too: a big digit whose stroke runs over its neighbour; when the pieces make too many, wider gaps may
    be bridged (up to LOOSE_JOIN): a 1 in two strokes. The second reading is the best path of any length
    through the pieces rated (segmentation's own reading of the line, but for pieces it never had to rate),
    when `count` was asked and that path holds another number of digits (else None): the caller may judge
    which of the two the line holds."""
    if ink.shape != mask.shape:
        raise DigitrecError(f"segment: ink {list(ink.shape)} and mask {list(mask.shape)} differ in shape")
    labels, n = ndimage.label(mask, EIGHT)
    if n == 0:
        return [], None
    groups = _components(labels, n)
    line_h = _line_height(groups)
    full, full_labels, f = ink, labels, int(line_h // WORK_LINE_H)
    if f >= 2:  # far more pixels than 28x28 crops need: segment a copy f times smaller, boxes drawn at full size
        ink, labels = _reduced(ink, labels, f)
        groups = _components(labels, n)
        if not groups:
            return [], None
        line_h = _line_height(groups)
    groups = _drop_small(_attach_tops(_merge(groups, line_h), line_h), line_h, MIN_HEIGHT_PX / scale_of(ink)[0])
    if not groups:
        return [], None
    values = np.asarray(ink, np.float32)
    parts = [_atoms(g, values, labels, line_h) for g in groups]
    atoms = [atom for part in parts for atom in part]
    edges = _edges(atoms, line_h, score is not None)
    digits = count(_digits_ink(groups, values, labels)) if count is not None and score is not None else None
    if digits is not None:
        reach = np.flatnonzero(np.isfinite(_counted_to(edges, len(atoms) + 1, digits)[0][-1]))
        short = digits - int(reach.max()) if reach.size else 0
        if short > 0:  # cut the widest groups kept whole, one more than the digits missing
            whole = sorted((k for k, part in enumerate(parts) if len(part) == 1), key=lambda k: -groups[k].w)
            for k in whole[:short + 1]:
                parts[k] = _atoms(groups[k], values, labels, line_h, LOOSE_WIDE)
            atoms = [atom for part in parts for atom in part]
            edges = _edges(atoms, line_h, True)
            if not np.isfinite(_counted_to(edges, len(atoms) + 1, digits)[0][-1, -1]):  # cuts through much ink
                edges = _edges(atoms, line_h, True, hopeless=-math.inf, max_aspect=LOOSE_ASPECT)
        elif not reach.size:  # no path as short as the count: a stroke apart from its digit
            edges = _edges(atoms, line_h, True, LOOSE_JOIN)
    rater = _Rater(atoms, values, score)
    if score is None:
        path = _best_path(edges, len(atoms) + 1)
    elif digits is None:
        path = _rated_path(edges, atoms, rater)
    else:
        path = _counted_path(edges, atoms, rater, digits)

    def pieces_of(path: list[int]) -> list[Piece]:
        spans = sorted(zip(path, path[1:]), key=lambda e: rater.box(e)[0] + rater.box(e)[2])
        boxes = [rater.box(e) if f < 2 else _full_box(
            rater.ink(e), rater.box(e), labels, full_labels,
            [k for atom in atoms[e[0]:e[1]] for k in atom.group.labels], f) for e in spans]
        pieces = [Piece(Box(*box_to_input(full, *box)), rater.crop(e), rater.probs.get(e))
                  for box, e in zip(boxes, spans)]
        if isinstance(full, Ink):
            full.pieces.update((tuple(p.box.as_list()), rater.ink(e)) for p, e in zip(pieces, spans))
        return pieces

    other = None
    if digits is not None:  # the best path of any length through the pieces rated: segmentation's own reading
        free = _best_path(_rated(edges, rater), len(atoms) + 1)
        other = pieces_of(free) if len(free) != len(path) else None
    return pieces_of(path), other


def split_rows(mask: np.ndarray) -> list[np.ndarray]:
    """The mask cut into rows of writing, top to bottom (a zip code above a phone number), each to be read as a
    line of its own; [mask] when it holds one row. A row is a band of image rows that digit-sized pieces span
    (pieces a line's jitter or slope moves up or down still overlap their neighbours), apart from the next band,
    with at least two such pieces side by side; the stacked strokes of one digit (an 8 drawn as two loops, a 3
    broken into arcs, a line of 8s all broken at the waist) are joined first, as segmenting a line joins them,
    so they make no rows. Every other piece goes with the band nearest its middle.
    The bands are found on the mask pooled 2x2 (a block is ink where any of its pixels is, so no stroke breaks):
    a quarter of the pixels to label, for every line read."""
    even = mask[:mask.shape[0] // 2 * 2, :mask.shape[1] // 2 * 2]
    pairs = even[::2] | even[1::2]
    labels, n = ndimage.label(pairs[:, ::2] | pairs[:, 1::2], EIGHT)
    if n < 4:
        return [mask]
    groups = _components(labels, n)
    line_h = _line_height(groups)
    if len(_bands(groups, line_h)) < 2:  # joining pieces only joins bands: most lines end here, unjoined
        return [mask]
    bands = _bands(_merge(groups, line_h, ROW_STACK_GAP), line_h)
    if len(bands) < 2 or not all(_side_by_side(band) for band in bands):
        return [mask]
    spans = [(2 * min(g.y0 for g in band), 2 * max(g.y1 for g in band)) for band in bands]
    labels, n = ndimage.label(mask, EIGHT)
    band_of = np.zeros(n + 1, np.int64)
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        middle = (sl[0].start + sl[0].stop) / 2
        band_of[label] = 1 + min(range(len(spans)), key=lambda k: max(spans[k][0] - middle, middle - spans[k][1], 0))
    owner = band_of[labels]  # 0 off the ink
    return [owner == k for k in range(1, len(spans) + 1)]


def _bands(groups: list[_Group], line_h: float) -> list[list[_Group]]:
    """The digit-sized groups (SHORT line heights or taller) in bands of image rows, top to bottom: a group joins
    the band above when it starts less than ROW_GAP line heights below the band's lowest ink."""
    bands: list[list[_Group]] = []
    for g in sorted((g for g in groups if g.h >= SHORT * line_h), key=lambda g: g.y0):
        if bands and g.y0 < max(b.y1 for b in bands[-1]) + ROW_GAP * line_h:
            bands[-1].append(g)
        else:
            bands.append([g])
    return bands


def _side_by_side(groups: list[_Group]) -> bool:
    """Whether two of the groups lie side by side, neither reaching over the other's columns."""
    ordered = sorted(groups, key=lambda g: g.x0)
    reach = ordered[0].x1
    for g in ordered[1:]:
        if g.x0 >= reach:
            return True
        reach = max(reach, g.x1)
    return False


def _reduced(ink: np.ndarray, labels: np.ndarray, f: int) -> tuple[Ink, np.ndarray]:
    """`ink` shrunk f times (area average), as an Ink that still maps its boxes onto the input image, and the
    component `labels` shrunk with it: a block is ink when a quarter of it was, labelled as the full-size
    component it holds (the highest-numbered, where two meet), so that no two components merge."""
    h, w = -(-ink.shape[0] // f) * f, -(-ink.shape[1] // f) * f
    pad = ((0, h - ink.shape[0]), (0, w - ink.shape[1]))
    size = (w // f, h // f)
    small = Image.fromarray(np.pad(np.asarray(ink, np.float32), pad)).resize(size, Image.Resampling.BOX)
    padded = np.pad(labels, pad)
    cover = Image.fromarray((padded > 0).view(np.uint8) * np.uint8(255)).resize(size, Image.Resampling.BOX)
    owner = padded[::f, ::f].copy()
    for dy in range(f):
        for dx in range(f):
            np.maximum(owner, padded[dy::f, dx::f], out=owner)
    shape = getattr(ink, "input_shape", None) or ink.shape
    sy, sx = shape[0] / ink.shape[0], shape[1] / ink.shape[1]  # the shrunk image spans (h, w) of ink's pixels
    return Ink(np.asarray(small), (round(h * sy), round(w * sx))), np.where(np.asarray(cover) >= 64, owner, 0)


def _full_box(piece: np.ndarray, box: tuple[int, int, int, int], labels: np.ndarray, full_labels: np.ndarray,
              own: list[int], f: int) -> tuple[int, int, int, int]:
    """The tight full-size box (x0, y0, x1, y1) of a piece found at 1/f size (its ink `piece` inside `box`, on
    the shrunk `labels`): its blocks, grown by one into blocks the shrinking left empty (a component's edge
    covering under a quarter of a block), drawn at full size over the pixels of its own components alone (a
    block shared with a neighbour went to one of them)."""
    x0, y0, x1, y1 = box
    bx0, by0 = max(x0 - 1, 0), max(y0 - 1, 0)
    bx1, by1 = min(x1 + 1, labels.shape[1]), min(y1 + 1, labels.shape[0])
    blocks = np.zeros((by1 - by0, bx1 - bx0), bool)
    blocks[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] = piece > 0
    blocks |= ndimage.binary_dilation(blocks, np.ones((3, 3), bool)) & (labels[by0:by1, bx0:bx1] == 0)
    fy0, fx0 = by0 * f, bx0 * f
    near = np.repeat(np.repeat(blocks, f, 0), f, 1)[:full_labels.shape[0] - fy0, :full_labels.shape[1] - fx0]
    hit = near & np.isin(full_labels[fy0:fy0 + near.shape[0], fx0:fx0 + near.shape[1]], own)
    rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
    if rows.size == 0:
        return x0 * f, y0 * f, min(x1 * f, full_labels.shape[1]), min(y1 * f, full_labels.shape[0])
    return fx0 + int(cols[0]), fy0 + int(rows[0]), fx0 + int(cols[-1]) + 1, fy0 + int(rows[-1]) + 1


class _Rater:
    """The pieces of runs of atoms (atoms[i:j], keyed (i, j)): working-size box and ink, 28x28 crop and the
    classifier's probabilities, each computed at most once."""

    def __init__(self, atoms: list[_Atom], values: np.ndarray, score: Score | None) -> None:
        self.atoms, self.values, self.score = atoms, values, score
        self.pieces: dict[tuple[int, int], tuple[tuple[int, int, int, int], np.ndarray]] = {}
        self.crops: dict[tuple[int, int], np.ndarray] = {}
        self.probs: dict[tuple[int, int], np.ndarray] = {}

    def box(self, e: tuple[int, int]) -> tuple[int, int, int, int]:
        """The working-size box (x0, y0, x1, y1) of the run e."""
        return self._piece(e)[0]

    def ink(self, e: tuple[int, int]) -> np.ndarray:
        """The ink of the run e inside its box, other pixels left out."""
        return self._piece(e)[1]

    def crop(self, e: tuple[int, int]) -> np.ndarray:
        """The 28x28 MNIST-style image of the run e."""
        if e not in self.crops:
            self.crops[e] = crop_to_mnist(self.ink(e))
        return self.crops[e]

    def rate(self, spans: list[tuple[int, int]]) -> None:
        """Classify the runs not rated yet, all in one call."""
        todo = [e for e in spans if e not in self.probs]
        if todo and self.score is not None:
            probs = np.asarray(self.score([self.crop(e) for e in todo]), np.float32)
            self.probs.update(zip(todo, probs))

    def gain(self, e: tuple[int, int]) -> float:
        """What the classifier adds to the run e's prior (rated already): its log top probability, never above 0."""
        return math.log(max(float(self.probs[e].max()), 1e-9))

    def _piece(self, e: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """The box and ink of the run e, cut out once."""
        if e not in self.pieces:
            self.pieces[e] = _piece(self.atoms[e[0]:e[1]], self.values)
        return self.pieces[e]


def _rated(edges: dict[tuple[int, int], float], rater: _Rater) -> dict[tuple[int, int], float]:
    """The edges rated so far, each worth its prior plus the classifier's gain."""
    return {e: v + rater.gain(e) for e, v in edges.items() if e in rater.probs}


def _rated_path(edges: dict[tuple[int, int], float], atoms: list[_Atom], rater: _Rater) -> list[int]:
    """The best path when an edge is worth its prior plus the classifier's gain, which is never above 0, so an
    unrated edge's prior bounds it: first the whole groups are rated (one path through the line), then, in one
    more batch, only the edges through which some path could still beat the best path of rated edges."""
    n = len(atoms) + 1
    rater.rate(_wholes(edges, atoms))
    rated = _rated(edges, rater)
    rater.rate(_promising(edges, rated, n))
    return _best_path(_rated(edges, rater), n)


def _counted_path(edges: dict[tuple[int, int], float], atoms: list[_Atom], rater: _Rater, digits: int) -> list[int]:
    """The best path of exactly `digits` edges, rating as few edges as _rated_path does: the whole groups
    first, then the edges through which a path of that length could beat the best rated one. The best
    path of any length when no path has that many edges."""
    n = len(atoms) + 1
    rater.rate(_wholes(edges, atoms))
    rated = _rated(edges, rater)
    optimistic = {e: rated.get(e, v) for e, v in edges.items()}
    ahead, _ = _counted_to(optimistic, n, digits)
    behind, _ = _counted_to({(n - 1 - j, n - 1 - i): v for (i, j), v in optimistic.items()}, n, digits)
    if not np.isfinite(ahead[n - 1, digits]):
        return _rated_path(edges, atoms, rater)
    floor = _counted_to(rated, n, digits)[0][n - 1, digits]
    rater.rate([e for e, v in sorted(edges.items()) if e not in rated and
                (ahead[e[0], :digits] + v + behind[n - 1 - e[1], digits - 1::-1]).max() > floor + 1e-9])
    best, back = _counted_to(_rated(edges, rater), n, digits)
    path, k = [n - 1], digits
    while path[-1] != 0:
        path.append(int(back[path[-1], k]))
        k -= 1
    return path[::-1]


def _counted_to(edges: dict[tuple[int, int], float], n: int, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """best[j, k]: the value of the best path from node 0 to node j through k edges (k <= digits; -inf where
    there is none), and back[j, k], the node before j on it."""
    best = np.full((n, digits + 1), -np.inf)
    back = np.zeros((n, digits + 1), np.int64)
    best[0, 0] = 0.0
    for (i, j), v in sorted(edges.items(), key=lambda kv: kv[0][1]):
        cand = best[i, :-1] + v
        better = cand > best[j, 1:]
        best[j, 1:][better], back[j, 1:][better] = cand[better], i
    return best, back


def _digits_ink(groups: list[_Group], ink: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The ink of the line's digit groups alone (specks and rules left out), cut to their joint box."""
    x0, x1 = min(g.x0 for g in groups), max(g.x1 for g in groups)
    y0, y1 = min(g.y0 for g in groups), max(g.y1 for g in groups)
    keep = np.isin(labels[y0:y1, x0:x1], [label for g in groups for label in g.labels])
    return np.where(keep, ink[y0:y1, x0:x1], 0.0).astype(np.float32)


def _wholes(edges: dict[tuple[int, int], float], atoms: list[_Atom]) -> list[tuple[int, int]]:
    """The edges that each take one whole group: together they make a path through the line."""
    return [(i, j) for i, j in edges
            if (i == 0 or atoms[i - 1].group is not atoms[i].group) and atoms[j - 1].cut is None
            and atoms[i].group is atoms[j - 1].group]


def _promising(edges: dict[tuple[int, int], float], rated: dict[tuple[int, int], float],
               n: int) -> list[tuple[int, int]]:
    """Unrated edges on some path whose optimistic value (rated edges at their value, unrated ones at their
    prior) beats the best path of rated edges alone."""
    optimistic = {e: rated.get(e, v) for e, v in edges.items()}
    ahead, behind = _best_to(optimistic, n), _best_from(optimistic, n)
    floor = max(_best_to(rated, n)[n - 1], -1e9)
    return sorted(e for e, v in edges.items()
                  if e not in rated and ahead[e[0]] + v + behind[e[1]] > floor + 1e-9)


def _best_to(edges: dict[tuple[int, int], float], n: int) -> list[float]:
    """The value of the best path from node 0 to each node (-inf where there is none)."""
    best = [-math.inf] * n
    best[0] = 0.0
    for (i, j), v in sorted(edges.items(), key=lambda kv: kv[0][1]):
        best[j] = max(best[j], best[i] + v)
    return best


def _best_from(edges: dict[tuple[int, int], float], n: int) -> list[float]:
    """The value of the best path from each node to node n-1 (-inf where there is none)."""
    best = [-math.inf] * n
    best[n - 1] = 0.0
    for (i, j), v in sorted(edges.items(), key=lambda kv: -kv[0][0]):
        best[i] = max(best[i], best[j] + v)
    return best


def tallest_px(ink: np.ndarray, mask: np.ndarray) -> float:
    """The height in input pixels of the tallest connected piece of ink: under MIN_HEIGHT_PX, all is specks."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return 0.0
    sy = scale_of(ink)[0]
    if (rows[-1] + 1 - rows[0]) * sy < MIN_HEIGHT_PX:
        return float(rows[-1] + 1 - rows[0]) * sy  # all of the ink is short: no need to label it
    cols = np.flatnonzero(mask.any(0))
    labels, _ = ndimage.label(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], EIGHT)
    return max(sl[0].stop - sl[0].start for sl in ndimage.find_objects(labels)) * sy


def bounding_box(ink: np.ndarray, mask: np.ndarray) -> Box | None:
    """The box around all of the mask in input-image pixels (reading a single digit), None when it is empty."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return Box(*box_to_input(ink, int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


def _components(labels: np.ndarray, n: int) -> list[_Group]:
    """One group per labelled component, noise (tiny beside the largest) left out."""
    area = np.bincount(labels.ravel(), minlength=n + 1)
    big = area[1:].max()
    groups = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None and area[i] >= TINY * big:
            groups.append(_Group(sl[1].start, sl[1].stop, sl[0].start, sl[0].stop, int(area[i]), [i]))
    return sorted(groups, key=lambda g: g.x0)


def _line_height(groups: list[_Group]) -> float:
    """The median height of the substantial groups (a third of the largest area or more); of one or two, the
    taller (a digit and a detached stroke of it are not a line of two: the stroke would halve the height)."""
    big = max(g.area for g in groups)
    heights = [g.h for g in groups if g.area >= big / 3]
    return float(max(heights) if len(heights) <= 2 else np.median(heights))


def _merge(groups: list[_Group], line_h: float, max_gap: float = STACK_GAP) -> list[_Group]:
    """Merge stacked pieces of one digit until nothing changes (a 5's detached top, a 7's bar); pieces further
    apart than `max_gap` line heights are not one digit's."""
    merged = True
    while merged:
        merged = False
        for i, j in combinations(range(len(groups)), 2):
            if _stacked(groups[i], groups[j], line_h, max_gap):
                groups[i] = groups[i].union(groups[j])
                del groups[j]
                merged = True
                break
    return sorted(groups, key=lambda g: g.x0)


def _stacked(a: _Group, b: _Group, line_h: float, max_gap: float = STACK_GAP) -> bool:
    """Pieces whose x-ranges mostly overlap, one above the other: not both spanning most of their joint
    height (that is two digits side by side, a 1 under the bar of a 7) and not far apart."""
    overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
    v_gap = max(a.y0, b.y0) - min(a.y1, b.y1)
    both_tall = min(a.h, b.h) >= 0.7 * (max(a.y1, b.y1) - min(a.y0, b.y0))
    return not both_tall and v_gap <= max_gap * line_h and overlap >= 0.5 * min(a.w, b.w)


def _attach_tops(groups: list[_Group], line_h: float) -> list[_Group]:
    """Join a short piece high on the line to the digit it nearly touches (a 5's top bar drawn on its own
    stroke, off to the right of the body): too short to be a digit, it would otherwise be dropped as a dash.
    A dash or hyphen sits at mid-height and is left alone."""
    out = list(groups)
    for piece in sorted(groups, key=lambda g: g.h):
        if piece.h >= SHORT * line_h or piece not in out or len(out) < 2:
            continue
        near = [g for g in out if g is not piece and g.h >= SHORT * line_h and _top_of(piece, g, line_h)]
        if near:
            host = min(near, key=lambda g: max(g.x0 - piece.x1, piece.x0 - g.x1))
            out[out.index(host)] = host.union(piece)
            out.remove(piece)
    return sorted(out, key=lambda g: g.x0)


def _top_of(piece: _Group, digit: _Group, line_h: float) -> bool:
    """`piece` lies along the top of `digit` (its lower edge in the digit's upper third) and at most
    ATTACH_GAP line heights to its side."""
    gap = max(digit.x0 - piece.x1, piece.x0 - digit.x1, 0)
    return gap <= ATTACH_GAP * line_h and piece.y1 <= digit.y0 + digit.h / 3 and piece.y0 >= digit.y0 - 0.3 * line_h


def _drop_small(groups: list[_Group], line_h: float, min_h: float) -> list[_Group]:
    """Drop specks (much smaller than the median group), dashes or dots (much shorter than the line), and
    anything shorter than `min_h`, the height under which nothing is legible (noise, however many specks)."""
    if len(groups) > 1:
        median_area = float(np.median([g.area for g in groups]))
        groups = [g for g in groups
                  if g.h >= SHORT * line_h and not (g.area < SPECK * median_area and g.h < 0.5 * line_h)]
    return [g for g in groups if g.h >= min_h]


@dataclass
class _Atom:
    """Part of one group: the whole group, or the pixels between two cut paths of a wide one. [a, b) and
    [y0, y1) bound its pixels (working size); `cut` is the log cost of ending a digit at its right edge
    when that edge cuts through the group, else None (a real gap follows)."""

    group: _Group
    region: np.ndarray  # bool mask over the group's box: this atom's pixels
    a: int
    b: int
    y0: int
    y1: int
    cut: float | None


def _atom(g: _Group, region: np.ndarray, cut: float | None) -> _Atom:
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    return _Atom(g, region, g.x0 + cols[0], g.x0 + cols[-1] + 1, g.y0 + rows[0], g.y0 + rows[-1] + 1, cut)


def _atoms(g: _Group, ink: np.ndarray, labels: np.ndarray, line_h: float, wide: float = WIDE) -> list[_Atom]:
    """The group whole, or, when wider than `wide` line heights, sliced along the candidate cut paths."""
    own = np.isin(labels[g.y0:g.y1, g.x0:g.x1], g.labels)
    h_ref = max(g.h, line_h)
    if g.w <= wide * h_ref:
        return [_atom(g, own, None)]
    own_ink = np.where(own, ink[g.y0:g.y1, g.x0:g.x1], 0.0).astype(np.float32)
    profile = ndimage.uniform_filter1d(own_ink.sum(0), max(1, round(0.06 * h_ref)))
    inked = profile[profile > 0]
    typical = max(float(np.median(inked)), 1e-6) if inked.size else 1.0
    starts = _candidates(profile, h_ref, min(MAX_CANDIDATES, math.ceil(CANDIDATES_PER_H * g.w / h_ref)))
    paths, crossed = _cut_paths(own_ink, starts, max(1, round(BEND * h_ref)))
    xx = np.arange(g.w)[None, :]
    left = np.zeros((g.h, 1), np.int64)
    atoms: list[_Atom] = []
    for k in range(len(starts) + 1):
        right = paths[k][:, None] if k < len(starts) else np.full((g.h, 1), g.w)
        region = own & (xx >= left) & (xx < right)
        if region.any():
            cost = CUT_COST * crossed[k] / typical if k < len(starts) else None
            atoms.append(_atom(g, region, cost))
        left = right
    atoms[-1].cut = None  # the group ends there, whatever path came last
    return atoms


def _cut_paths(own_ink: np.ndarray, starts: list[int], bend: int) -> tuple[list[np.ndarray], list[float]]:
    """For each start column, the top-to-bottom path through the least ink that stays within `bend`
    columns of it, moving at most one column per row (so a cut can slip between overlapping digits);
    paths are kept strictly left to right. Returns the path (column per row) and the ink it crosses.

    Tall groups are searched on a grid pooled f x f (f = height // CUT_ROWS), the path drawn back at full
    size: the search costs f^2 less, and a cut a few pixels off in a digit over 100 px high changes nothing."""
    if not starts:
        return [], []
    h, w = own_ink.shape
    f = max(1, h // CUT_ROWS)
    if f > 1:
        hp, wp = -(-h // f), -(-w // f)
        pooled = np.pad(own_ink, ((0, hp * f - h), (0, wp * f - w))).reshape(hp, f, wp, f).sum((1, 3)) / f
        small = _search(pooled, [min(wp - 1, c // f) for c in starts], max(1, bend // f), STEP * f)
        raw = [np.clip(np.repeat(path, f)[:h] * f + f // 2, 0, w - 1) for path in small]
    else:
        raw = _search(own_ink, starts, bend, STEP)
    paths, crossed = [], []
    for path in raw:
        paths.append(np.maximum(path, paths[-1] + 1) if paths else path)
        crossed.append(float(own_ink[np.arange(h), np.clip(paths[-1], 0, w - 1)].sum()))
    return paths, crossed


def _search(own_ink: np.ndarray, starts: list[int], bend: int, step: float) -> list[np.ndarray]:
    """The least-ink top-to-bottom path from each start column (see _cut_paths), by dynamic programming over
    the rows, all start columns at once; `step` is the cost of each diagonal move."""
    h, _ = own_ink.shape
    padded = np.pad(own_ink, ((0, 0), (bend, bend)), constant_values=np.float32(1e3))  # never leave the box
    cols = np.asarray(starts)[:, None] + np.arange(2 * bend + 1)[None, :]  # [K, B] in padded coordinates
    cost = padded[:, cols] + np.float32(step) * (np.abs(np.arange(-bend, bend + 1)) > 0)  # [H, K, B]
    # Forward pass: hist[r] holds the least path cost to each cell of row r, padded with inf on both sides.
    # min(a, b) + step == min(a + step, b + step) exactly (rounding is monotonic), so the diagonal moves
    # cost one addition per row; the back pointers are then derived for all rows at once.
    k, width = cost.shape[1:]
    hist = np.full((h, k, width + 2), np.inf, np.float32)
    hist[0, :, 1:-1] = cost[0]
    for r in range(1, h):
        prev = hist[r - 1]
        best = np.minimum(prev[:, 1:-1], np.minimum(prev[:, :-2], prev[:, 2:]) + step)
        np.add(best, cost[r], out=hist[r, :, 1:-1])
    prev = hist[:-1]
    straight, from_left, from_right = prev[..., 1:-1], prev[..., :-2] + step, prev[..., 2:] + step
    best = np.minimum(np.minimum(from_left, from_right), straight)
    turn = best != straight  # straight down on ties; else from the left (-1) before from the right (+1)
    back = np.zeros((h, k, width), np.int8)
    back[1:] = turn.view(np.int8) - 2 * (turn & (best == from_left)).view(np.int8)
    x = hist[-1, :, 1:-1].argmin(1)  # each start's best last-row column; then walk back up, all starts at once
    rows = np.arange(k)
    xs = np.empty((h, k), np.int64)
    for r in range(h - 1, -1, -1):
        xs[r] = x
        x = x + back[r, rows, x]
    return [xs[:, i] + start - bend for i, start in enumerate(starts)]


def _edges(atoms: list[_Atom], line_h: float, may_join: bool, max_join: float = MAX_JOIN,
           hopeless: float = HOPELESS, max_aspect: float = MAX_ASPECT) -> dict[tuple[int, int], float]:
    """Every run atoms[i:j] that could be one digit, with its log prior: width, height, the cut that ends it,
    and the cost of each real gap it bridges (only when a classifier can judge the joined piece); runs priced
    under `hopeless`, or wider than `max_aspect` line heights, are left out. A whole group is always an edge, so a
    path through the line always exists."""
    edges = {}
    for i in range(len(atoms)):
        g = atoms[i].group
        starts_group = i == 0 or atoms[i - 1].group is not g
        joined = 0.0
        for j in range(i + 1, len(atoms) + 1):
            run = atoms[i:j]
            if j - i > 1 and run[-2].cut is None:  # run[-2] ends at a real gap: joining across it
                if not may_join:
                    break
                joined += _join_cost(run[:-1], run[-1], line_h)
                if joined > max_join:
                    break
            same = run[-1].group is g
            whole = starts_group and same and run[-1].cut is None
            left, right = min(t.a for t in run), max(t.b for t in run)
            y0, y1 = min(t.y0 for t in run), max(t.y1 for t in run)
            if not whole and (right - left > max_aspect * line_h or y1 - y0 < SHORT * line_h):
                if not same:
                    break
                continue
            value = _shape_prior(right - left, y1 - y0, line_h) - (run[-1].cut or 0.0) - joined
            if value > hopeless or whole:
                edges[i, j] = value
    return edges


def _join_cost(left: list[_Atom], right: _Atom, line_h: float) -> float:
    """Log cost of taking pieces on both sides of a real gap as one digit: grows with the gap, and is high
    when both sides already span the line (two digits side by side rather than a broken one)."""
    gap = right.a - max(t.b for t in left)
    tall = min(max(t.y1 for t in left) - min(t.y0 for t in left), right.y1 - right.y0) >= 0.85 * line_h
    return JOIN_COST + GAP_COST * max(gap, 0) / line_h + (TALL_JOIN_COST if tall else 0.0)


def _piece(run: list[_Atom], ink: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The tight working-size box (x0, y0, x1, y1) of a run of atoms and its ink, other pixels left out."""
    x0, x1 = min(t.a for t in run), max(t.b for t in run)
    y0, y1 = min(t.y0 for t in run), max(t.y1 for t in run)
    keep = np.zeros((y1 - y0, x1 - x0), bool)
    for t in run:
        g = t.group
        gy0, gy1, gx0, gx1 = max(g.y0, y0), min(g.y1, y1), max(g.x0, x0), min(g.x1, x1)
        keep[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0] |= t.region[gy0 - g.y0:gy1 - g.y0, gx0 - g.x0:gx1 - g.x0]
    return (x0, y0, x1, y1), np.where(keep, ink[y0:y1, x0:x1], 0.0).astype(np.float32)


def _best_path(edges: dict[tuple[int, int], float], n: int) -> list[int]:
    """Highest-scoring path 0 -> n-1 through a DAG of left-to-right edges (one always exists, see _edges)."""
    best = [-np.inf] * n
    back = [0] * n
    best[0] = 0.0
    for j in range(1, n):
        for i in range(j):
            v = edges.get((i, j))
            if v is not None and best[i] + v > best[j]:
                best[j], back[j] = best[i] + v, i
    path = [n - 1]
    while path[-1] != 0:
        path.append(back[path[-1]])
    return path[::-1]


def _candidates(profile: np.ndarray, h: float, limit: int) -> list[int]:
    """Cut columns, at most `limit`, none closer than 0.15 h to another or to an edge: first the even split
    into the likeliest number of digits (overlapping digits touch where the profile is high, not low),
    then the minima of the ink profile, emptiest first, then other even splits moved to the emptiest
    column near them."""
    w = profile.size
    margin, near = max(1, round(0.15 * h)), max(1, round(0.1 * h))
    likely = max(2, round(w / (0.75 * h)))
    first = [round(i * w / likely) for i in range(1, likely)]
    minima = [i for i in range(margin, w - margin) if profile[i] <= profile[i - 1] and profile[i] <= profile[i + 1]]
    even = []
    for k in range(2, min(MAX_PIECES, max(2, round(w / (0.4 * h)))) + 1):
        for i in range(1, k):
            lo, hi = max(margin, round(i * w / k) - near), min(w - margin, round(i * w / k) + near + 1)
            if lo < hi:
                even.append(lo + int(np.argmin(profile[lo:hi])))
    chosen: list[int] = []
    for c in first + sorted(minima, key=lambda i: profile[i]) + sorted(even, key=lambda i: profile[i]):
        if len(chosen) < limit and margin <= c < w - margin and all(abs(c - o) >= 0.15 * h for o in chosen):
            chosen.append(c)
    return sorted(chosen)


def _shape_prior(w: int, h: int, line_h: float) -> float:
    """Log prior of a w x h piece being one digit of a line line_h high: flat over normal digits, falling
    off for slivers (a cut too close to a stroke), wides (two digits in one piece) and shorts (a stub)."""
    aspect = w / max(h, line_h)
    prior = 0.0
    if aspect > 1.0:  # MNIST: 5% of digits are wider than 1.1 times their height, 1% wider than 1.43
        prior -= ((aspect - 1.0) / 0.35) ** 2
    elif aspect < 0.15:
        prior -= ((0.15 - aspect) / 0.05) ** 2
    if h < 0.65 * line_h:
        prior -= ((0.65 - h / line_h) / 0.15) ** 2
    return prior
