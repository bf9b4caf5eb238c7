"""Recognizer: read one digit or a one-line number from any image, and say when it does not know.

Preprocessing (decode, polarity, clean, crop, 20-px box, centre of mass) and segmentation are the
same whichever backend runs the network.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitrec.errors import DigitrecError
from digitrec.read.backends import Backend, load_backend
from digitrec.read.gate import LetterGate
from digitrec.read.lines import LineReader, LineReading
from digitrec.read.normalize import preprocess, to_mnist
from digitrec.read import DEFAULT_THRESHOLD
from digitrec.read.segment import (MIN_HEIGHT_PX, Box, Piece, bounding_box, segment_pieces, segment_readings,
                                   split_rows, tallest_px)
from digitrec.training.checkpoint import shipped_weights

LINE_WEIGHT = 0.5  # the line reader's share when its reading of each digit is averaged with the classifier's
# ...and of a lone digit (a reading of one): there the classifier errs less than LineNet (development canvases of
# seeds 12345, 1 and 2: 99.57 against 98.87 % of 6,000), so its second opinion counts for less (chosen on
# development sets; docs/reading.md, "A lone digit")
LONE_WEIGHT = 0.3
# Two pieces are read as one digit instead when their joint box is at most ONE_ASPECT times as wide as it is high,
# and the classifier reads the whole at least ONE_GAIN times as confidently as the pieces (their geometric mean),
# and at least ONE_MIN (chosen on development sets: lone digits read as numbers, and two-digit numbers;
# docs/reading.md, "A lone digit")
ONE_ASPECT, ONE_GAIN, ONE_MIN = 1.2, 1.2, 0.9
GATE_PIECES = 4  # readings of at most this many pieces are shown to the letter gate (a W is often cut in four)
BUILTIN = {"default": ("default.pt",),
           "default-ensemble": ("default.pt", "ensemble-1.pt", "ensemble-2.pt", "ensemble-3.pt", "ensemble-4.pt")}


@dataclass
class DigitItem:
    """One digit read: its class, confidence, box [x, y, w, h] in the input image, and all ten probabilities."""

    digit: int
    confidence: float
    box: list[int]
    probs: list[float]


@dataclass
class ReadResult:
    """What was read: the digit string ("" when abstaining), its confidence, the items, and why if empty."""

    digits: str
    confidence: float
    items: list[DigitItem] = field(default_factory=list)
    reason: str | None = None
    crops: np.ndarray | None = field(default=None, repr=False, compare=False)  # the 28x28 inputs the model saw

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the shape `digitrec predict --json` prints)."""
        out = {"digits": self.digits, "confidence": self.confidence, "items": [asdict(i) for i in self.items]}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class Recognizer:
    """Reads handwritten digits with a model behind a backend; see `Recognizer.load`."""

    def __init__(
        self, backend: Backend, threshold: float = DEFAULT_THRESHOLD, lines: LineReader | None = None,
        gate: LetterGate | None = None,
    ) -> None:
        self.backend = backend
        self.threshold = _checked_threshold(threshold)
        self.lines = lines
        self.gate = gate

    @classmethod
    def load(
        cls, model: str | Path = "default", *, threshold: float = DEFAULT_THRESHOLD, backend: str | None = None,
        lines: str | Path | None = "default", gate: str | Path | None = "default",
    ) -> Recognizer:
        """The shipped model ('default', 'default-ensemble'), a checkpoint, or an exported file (.onnx, .pt2,
        .torchscript); the file type picks the backend unless `backend` names one. `lines` is the line reader
        that counts the digits of a line for segmentation: the shipped one, a `digitrec train-lines`
        checkpoint, or None for segmentation alone. `gate` is the letter gate that turns a lone letter or sign
        away: the shipped one, a `digitrec train-gate` checkpoint or its .onnx export, or None to read every
        piece as a digit."""
        reader = None if lines is None else LineReader.load(None if str(lines) == "default" else lines)
        letter_gate = None if gate is None else LetterGate.load(None if str(gate) == "default" else gate)
        return cls(load_backend(model, backend), threshold, reader, letter_gate)

    @property
    def card(self) -> dict:
        """The model card of the network behind this recognizer."""
        return self.backend.card

    def classify(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Probabilities [B, 10] for images already in MNIST form: [B, 28, 28] or [B, 1, 28, 28] in [0, 1]."""
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch, np.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise DigitrecError(f"classify expects images [B, 28, 28] or [B, 1, 28, 28], got {list(x.shape)}")
        return self.backend(x.astype(np.float32, copy=False))

    def read(
        self, image: Any, *, single: bool = False, threshold: float | None = None, name: str | None = None
    ) -> ReadResult:
        """Read the digits in `image` (path, bytes, PIL image or numpy array), left to right; rows of writing one
        above the other are read top to bottom, a newline between their digits."""
        threshold = self.threshold if threshold is None else _checked_threshold(threshold)
        ink, mask = preprocess(image, name=name)
        rows, why = self._rows(ink, mask, single=single)
        pieces = [piece for row, _ in rows for piece in row]
        if not pieces:
            return ReadResult("", 0.0, [], reason=why)
        crops = np.stack([p.crop for p in pieces])
        probs = np.concatenate([_co_read(self._probs(row), heard) for row, heard in rows])
        items = [DigitItem(int(p.argmax()), float(p.max()), piece.box.as_list(), [round(float(v), 6) for v in p])
                 for piece, p in zip(pieces, probs)]
        breaks = np.cumsum([len(row) for row, _ in rows])[:-1].tolist()
        # the gate judges a lone mark; rows of digits are numbers, which it was not trained on
        result = (self._not_a_digit(items, crops, ink) if len(rows) == 1 else None) or _decide(items, threshold, breaks)
        result.crops = crops
        return result

    def _not_a_digit(self, items: list[DigitItem], crops: np.ndarray, ink: np.ndarray) -> ReadResult | None:
        """An empty reading with its reason when the gate rates the ink a letter or sign. Only readings of at most
        `GATE_PIECES` pieces are asked, about all their ink framed as one (a letter is often cut: a K read as
        "15", a W as "1111"); the pieces of a longer line are parts of a number, which the gate was not trained on."""
        if self.gate is None or not 1 <= len(items) <= GATE_PIECES:
            return None
        if len(items) == 1:
            whole = crops
        else:
            whole = to_mnist(ink, _joint(Box(*i.box) for i in items).as_list())[None]
        score = float(self.gate.scores(whole)[0])
        if score <= self.gate.threshold:
            return None
        return ReadResult("", min(i.confidence for i in items), items,
                          reason=f"not a digit: looks like a letter or sign (letter gate {score:.3f} > "
                                 f"{self.gate.threshold:.3f})")

    def crops(self, image: Any, *, single: bool = False, name: str | None = None) -> tuple[list[list[int]], np.ndarray]:
        """The boxes [x, y, w, h] and the 28x28 crops the model sees for `image`, left to right."""
        ink, mask = preprocess(image, name=name)
        pieces = [piece for row, _ in self._rows(ink, mask, single=single)[0] for piece in row]
        if not pieces:
            return [], np.zeros((0, 28, 28), np.float32)
        return [p.box.as_list() for p in pieces], np.stack([p.crop for p in pieces])

    def _rows(self, ink: np.ndarray, mask: np.ndarray, *, single: bool
              ) -> tuple[list[tuple[list[Piece], np.ndarray | None]], str]:
        """The digits found in the ink, a list per row of writing (top to bottom; see `_line`) with what the line
        reader read there, and why there are none (blank, noise, specks) when there are none."""
        if not mask.any():
            return [], ink.rejected or "blank: no ink found"
        specks = f"no digit: only specks of ink under {MIN_HEIGHT_PX} px high"
        if single:
            if tallest_px(ink, mask) < MIN_HEIGHT_PX:
                return [], specks
            box = bounding_box(ink, mask)  # in input pixels, whatever the working size
            return [([Piece(box, to_mnist(ink, box.as_list()), None)], self._lone(ink, mask))], ""
        rows = [self._line(ink, row) for row in split_rows(mask)]
        return [row for row in rows if row[0]], specks

    def _lone(self, ink: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        """What the line reader reads in the ink of a lone digit (probabilities [1, 10]), when it reads one digit
        there: a second reader of the same ink, as each digit of a line has."""
        if self.lines is None:
            return None
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        return self.lines.read(np.where(mask[box], np.asarray(ink)[box], 0.0)).probs_for(1)

    def _line(self, ink: np.ndarray, mask: np.ndarray) -> tuple[list[Piece], np.ndarray | None]:
        """The digits of one line with their crops (and the probabilities segmenting computed), and what the line
        reader read there (probabilities [N, 10]); two pieces that make one digit (`_as_one`) are read as one."""
        pieces, heard = self._segmented(ink, mask)
        return self._as_one(ink, pieces, heard) or (pieces, heard)

    def _as_one(self, ink: np.ndarray, pieces: list[Piece], heard: np.ndarray | None
                ) -> tuple[list[Piece], None] | None:
        """The two pieces read as one digit, when together they are shaped like one (ONE_ASPECT) and the classifier
        reads them whole far more confidently than apart (ONE_GAIN, ONE_MIN): a hatched 0 cut into "80", a small 9
        into "98", a 5 whose bar stands apart into "52". The line reader, which learned lines of several digits,
        often counts two in a lone digit; two digits side by side are wider, and each is read confidently."""
        if len(pieces) != 2:
            return None
        box = _joint(p.box for p in pieces)
        if box.w > ONE_ASPECT * box.h:
            return None
        crop = to_mnist(ink, box.as_list())
        whole = self.classify(crop[None])[0]
        apart = math.sqrt(float(_co_read(self._probs(pieces), heard).max(1).prod()))
        if float(whole.max()) < max(ONE_MIN, ONE_GAIN * apart):
            return None
        return [Piece(box, crop, whole)], None

    def _segmented(self, ink: np.ndarray, mask: np.ndarray) -> tuple[list[Piece], np.ndarray | None]:
        """The line as segmentation cut it, and what the line reader read there: when segmentation alone cut
        another number of digits than the line reader counted, the reading of the two that the line reader finds
        likelier (all its alignments summed)."""
        if self.lines is None:
            return segment_pieces(ink, mask, score=self._score_crops), None
        heard: list[LineReading] = []

        def count(line: np.ndarray) -> int | None:
            heard.append(self.lines.read(line))
            return len(heard[0].digits) or None

        pieces, alone = segment_readings(ink, mask, score=self._score_crops, count=count)
        if not heard:
            return pieces, None
        reading = heard[0]
        mine = reading.probs_for(len(pieces))
        if alone is not None:  # segmentation alone cut another number of digits: LineNet weighs both readings
            theirs = reading.probs_for(len(alone))
            if reading.loglik(_argmax(_co_read(self._probs(alone), theirs))) > reading.loglik(
                    _argmax(_co_read(self._probs(pieces), mine))):
                return alone, theirs
        return pieces, mine

    def _probs(self, pieces: list[Piece]) -> np.ndarray:
        """The pieces' probabilities: those segmentation already computed, the others in one classifier call."""
        if all(p.probs is not None for p in pieces):
            return np.stack([p.probs for p in pieces])
        return self.classify(np.stack([p.crop for p in pieces]))

    def _score_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Probabilities [N, 10] of a list of 28x28 crops, in one classifier call."""
        return self.classify(np.stack(crops))


def _co_read(probs: np.ndarray, heard: np.ndarray | None) -> np.ndarray:
    """The classifier's probabilities of a line's pieces averaged with the line reader's, when it read as many (its
    share LINE_WEIGHT, or LONE_WEIGHT for a lone digit)."""
    if heard is None or len(heard) != len(probs):
        return probs
    weight = LONE_WEIGHT if len(probs) == 1 else LINE_WEIGHT
    return (1 - weight) * probs + weight * heard  # two readers of the same digits


def _joint(boxes: Iterable[Box]) -> Box:
    """The smallest box holding all of `boxes` (input pixels)."""
    boxes = list(boxes)
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    return Box(x0, y0, max(b.x + b.w for b in boxes) - x0, max(b.y + b.h for b in boxes) - y0)


def _argmax(probs: np.ndarray) -> str:
    """The digit string of per-digit probabilities [N, 10]."""
    return "".join(str(int(d)) for d in probs.argmax(1))


def _checked_threshold(threshold: Any) -> float:
    """The abstain threshold as a float in [0, 1], or one clear error naming the value given."""
    number = isinstance(threshold, (int, float, np.floating, np.integer)) and not isinstance(threshold, bool)
    if not number or not 0 <= threshold <= 1:
        raise DigitrecError(f"threshold {threshold!r} must be a number in [0, 1]")
    return float(threshold)


def _decide(items: list[DigitItem], threshold: float, breaks: Sequence[int] = ()) -> ReadResult:
    """Abstain from the whole reading when any digit is below the threshold; keep the guesses as items. A new row
    of writing starts at each index in `breaks`: a newline goes before its digits."""
    confidence = min(item.confidence for item in items)
    if not all(math.isfinite(p) for item in items for p in item.probs):  # a model whose training diverged
        return ReadResult("", 0.0, [], reason="the model gave no probabilities (NaN): its weights are broken")
    if confidence < threshold:
        weakest = min(range(len(items)), key=lambda i: items[i].confidence)
        return ReadResult("", confidence, items,
                          reason=f"low confidence: digit {weakest + 1} at {confidence:.2f} < threshold {threshold:.2f}")
    return ReadResult("".join(("\n" if k in breaks else "") + str(i.digit) for k, i in enumerate(items)), confidence,
                      items)


def resolve_model(model: str | Path) -> list[Path]:
    """The weight files behind a model name or path, with a clear error when there are none."""
    if str(model) in BUILTIN:
        paths = [shipped_weights(name) for name in BUILTIN[str(model)]]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DigitrecError(f"model {model!r}: the package is missing its weight files {missing}; reinstall digitrec")
        return paths
    path = Path(model)
    if not path.exists():
        raise DigitrecError(f"model {model!r}: no such file, and not one of {', '.join(BUILTIN)}")
    return [path]
