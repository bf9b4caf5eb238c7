"""The line reader: LineNet reads a whole line of digits at once, to tell segmentation how many it holds.

Touching digits fool a digit classifier: "16" squeezed into one box looks like a fine 6. A network that sees
the whole line learned where digits begin and end from thousands of touching pairs (`digitrec.data.lines`),
so its digit count settles how a line is cut, and its reading of each digit is averaged with the
classifier's. It runs on ONNX Runtime when given (or shipped) an .onnx export, else in PyTorch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from digitrec.data.lines import LINE_H, to_line_height
from digitrec.errors import DigitrecError
from digitrec.exporter import export_network_onnx, open_onnx_session
from digitrec.models.linenet import LineMixture, LineNet, beam_decode, ctc_loglik, greedy_decode, pad_to_stride
from digitrec.training.checkpoint import load_checkpoint, save_checkpoint, shipped_weights

SHIPPED = ("lines.onnx", "lines.pt")  # the first that exists is used
PARITY = 1e-4  # largest difference in log-probability allowed between an export and its model
LEVEL_GAIN = 0.9  # a sloping line is levelled when that leaves at most this share of its inked band's height
LEVEL_LONG = 3.0  # ...and when the levelled line is at least this many times as long as its band is high
INKED = 0.05  # ink above this counts (as `to_line_height` cuts the line)


class LineReader:
    """Runs LineNet on the ink of one line: the digits it reads, left to right, with their probabilities."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], source: str) -> None:
        self._run = run
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> LineReader:
        """A LineNet checkpoint (`digitrec train-lines`) or its .onnx export; the shipped one by default."""
        if path is None:
            path = next((p for p in map(shipped_weights, SHIPPED) if p.is_file()), shipped_weights(SHIPPED[1]))
        path = Path(path)
        if path.suffix == ".onnx":
            if not path.is_file():
                raise DigitrecError(f"line reader {path}: no such file")
            session = open_onnx_session(path)
            name = session.get_inputs()[0].name
            if name != "line":  # what export_onnx names LineNet's input
                raise DigitrecError(f"line reader {path}: not a LineNet export (made by `digitrec train-lines`); "
                                    "a digit classifier goes to --model")
            return cls(lambda x: session.run(None, {name: x})[0], str(path))
        return cls(_eager(load_model(path)), str(path))

    def read(self, ink: np.ndarray) -> LineReading:
        """What LineNet reads in `ink` (float [H, W], 1 = ink, the line cut to its digits)."""
        x = pad_to_stride(to_line_height(torch.from_numpy(level(np.ascontiguousarray(ink, np.float32)))))[None, None]
        out = np.asarray(self._run(x.numpy()), np.float32)  # [1, blank + 10 digits, columns]
        logp = out[0].T
        probs = np.exp(logp[:, 1:])
        path = np.zeros((0, 10), np.float32)
        spans = greedy_decode(torch.from_numpy(out))[0]
        if spans:
            path = np.stack([probs[a:b + 1].max(0) for _, a, b in spans])
            path /= path.sum(1, keepdims=True)
        return LineReading("".join(map(str, beam_decode(logp))), path, logp)


@dataclass(frozen=True)
class LineReading:
    """LineNet's reading of a line: the likeliest digit string (CTC beam search, every alignment of a string to
    the columns summed: the single likeliest alignment, best-path decoding, can count a digit too many or too
    few), the per-digit probabilities [N, 10] of the best path's N digits (for each, each class's highest
    probability over the digit's columns, normalised) and the column log-probabilities [columns, 11]."""

    digits: str
    path_probs: np.ndarray = field(repr=False)
    logp: np.ndarray = field(repr=False)

    def probs_for(self, n: int) -> np.ndarray | None:
        """LineNet's per-digit probabilities for a reading of `n` digits: the best path's when it holds `n`."""
        return self.path_probs if len(self.path_probs) == n else None

    def loglik(self, digits: str) -> float:
        """log P(digits | line) under LineNet (CTC: all alignments of the string to the columns summed)."""
        return ctc_loglik(self.logp, digits)


def level(ink: np.ndarray) -> np.ndarray:
    """The line's ink with each column moved up or down by whole pixels so that the line runs level, when that
    makes its inked band at least LEVEL_GAIN lower and the levelled line is LEVEL_LONG times as long as its band
    is high; else `ink` itself. A number written on a slope, or drifting up or down, is a band a few digits
    high, and LineNet, which sees the band scaled to 32 px, loses the digits at its ends. The slope is the
    least-squares fit of the columns' centres of ink, each column weighted by its ink; columns keep their
    order, so the digits do. One digit or two are left alone: their columns slope with their strokes."""
    h, w = ink.shape
    mass = ink.sum(0)
    if h < 2 or np.count_nonzero(mass) < 2:
        return ink
    centre = (np.arange(h, dtype=np.float32) @ ink) / np.maximum(mass, 1e-6)
    x = np.arange(w, dtype=np.float64)
    xm = float(mass @ x) / float(mass.sum())
    var = float(mass @ (x - xm) ** 2)
    if var <= 0:
        return ink
    slope = float(mass @ ((x - xm) * centre)) / var
    shift = np.rint(-slope * (x - xm)).astype(np.int64)
    shift -= shift.min()
    inked = ink > INKED
    cols = np.flatnonzero(inked.any(0))
    if shift.max() == 0 or not cols.size:
        return ink
    # The inked band before and after, from each inked column's first and last inked row: the levelled line
    # is only drawn when it is kept.
    first, last = inked[:, cols].argmax(0), h - 1 - inked[::-1, cols].argmax(0)
    band = int((last + shift[cols]).max() - (first + shift[cols]).min()) + 1
    if band > LEVEL_GAIN * (int(last.max() - first.min()) + 1) or w < LEVEL_LONG * band:
        return ink
    out = np.zeros((h + int(shift.max()), w), np.float32)
    out[np.arange(h)[:, None] + shift[None, :], np.arange(w)[None, :]] = ink
    return out


def load_model(path: str | Path) -> LineNet | LineMixture:
    """The LineNet (or mixture of LineNets, `mix_checkpoints`) in a line reader checkpoint, with one clear error
    for any other file."""
    return _model_of(load_checkpoint(path), path)


def _model_of(ckpt: dict, path: str | Path) -> LineNet | LineMixture:
    """The network of a loaded line reader checkpoint (`path` names it in errors)."""
    meta = ckpt.get("linenet")
    if not isinstance(meta, dict) or "args" not in meta:
        raise DigitrecError(f"line reader {path}: not a LineNet checkpoint (made by `digitrec train-lines`)")
    members = int(meta.get("members", 0))
    model = LineMixture([LineNet(**meta["args"]) for _ in range(members)]) if members else LineNet(**meta["args"])
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        raise DigitrecError(f"line reader {path}: its weights do not fit its network ({e})") from None
    return model.eval()


def mix_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """One line reader that reads as the LineNets of `paths` together (`LineMixture`): written to `out` (a
    checkpoint whose `linenet` facts name its members' sources and figures), atomically."""
    ckpts = [load_checkpoint(p) for p in paths]
    members = [_model_of(c, p) for c, p in zip(ckpts, paths)]
    if not members or any(isinstance(m, LineMixture) for m in members):
        raise DigitrecError("mix line readers: give one or more single line readers (`digitrec train-lines`)")
    if any(m.args != members[0].args for m in members):
        raise DigitrecError("mix line readers: their networks differ in shape " + str([m.args for m in members]))
    sources = [{"path": str(p), "figures": c["linenet"].get("figures", {})} for c, p in zip(ckpts, paths)]
    save_checkpoint({"model": LineMixture(members).state_dict(),
                     "linenet": {"args": members[0].args, "members": len(members), "sources": sources}}, Path(out))
    return Path(out)


def _eager(model: LineNet | LineMixture) -> Callable[[np.ndarray], np.ndarray]:
    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    return run


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """Export a LineNet checkpoint to ONNX (any line width), written atomically once ONNX Runtime's output
    matches PyTorch's within PARITY on lines of several widths."""
    gen = torch.Generator().manual_seed(0)
    checks = [torch.rand(2, 1, LINE_H, width, generator=gen) for width in (32, 200, 480)]
    dims = {0: torch.export.Dim("batch", min=1), 3: torch.export.Dim("width", min=8, max=16384)}
    return export_network_onnx(load_model(checkpoint), out, torch.rand(2, 1, LINE_H, 160), dims, checks,
                               names=("line", "logp"), tol=PARITY, what=str(checkpoint))
