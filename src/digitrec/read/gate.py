"""The letter gate at read time: is this piece of ink a digit at all?

The digit classifier has no 'none of these' output, so an A or a K comes back as some digit. The gate
(`digitrec train-gate`, shipped as weights/gate.onnx, the export of weights/gate.pt: three small networks read
as one, their logits averaged) rates a framed 28x28 crop as digit or not; above its threshold, set in training
so that 1 in 2,000 validation digits would be turned away, the reader returns no digit and says why. The
export runs on ONNX Runtime, which rates one crop several times faster than PyTorch's eager mode: the gate is
asked about every reading of up to four pieces.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from digitrec.errors import DigitrecError
from digitrec.exporter import export_network_onnx, open_onnx_session
from digitrec.training.checkpoint import load_checkpoint, shipped_weights
from digitrec.training.gate import gate_network, gate_scores

SHIPPED = ("gate.onnx", "gate.pt")  # the first that exists is used
META = "digitrec/gate"  # the ONNX metadata entry holding the checkpoint's gate facts (threshold, figures, ...)
INPUT, OUTPUT = "crops", "logits"
PARITY = 1e-4  # largest difference in logits allowed between the export and its model


class LetterGate:
    """A trained gate and its threshold: `scores` rates crops, `threshold` is where 'not a digit' begins;
    `meta` holds what training recorded (threshold, letters, fonts, figures)."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], meta: dict[str, Any], source: str) -> None:
        self._run = run
        self.meta = meta
        self.threshold = float(meta["threshold"])
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> LetterGate:
        """A `digitrec train-gate` checkpoint or its .onnx export; the shipped one by default."""
        if path is None:
            path = next((p for p in map(shipped_weights, SHIPPED) if p.is_file()), shipped_weights(SHIPPED[1]))
        path = Path(path)
        if path.suffix == ".onnx":
            return cls._load_onnx(path)
        model, meta = load_model(path)
        return cls(lambda x: gate_scores(model, x), meta, str(path))

    @classmethod
    def _load_onnx(cls, path: Path) -> LetterGate:
        if not path.is_file():
            raise DigitrecError(f"letter gate {path}: no such file")
        session = open_onnx_session(path, threads=1)  # one crop or a few: more threads only wait on each other
        inputs = session.get_inputs()
        meta = _meta(session.get_modelmeta().custom_metadata_map.get(META))
        if len(inputs) != 1 or inputs[0].name != INPUT or meta is None:
            raise DigitrecError(f"letter gate {path}: not a letter gate's export (made by `digitrec train-gate`)")

        def run(x: np.ndarray) -> np.ndarray:
            return softmax(session.run(None, {INPUT: x.reshape(-1, 1, 28, 28)})[0], axis=1)[:, 1]

        return cls(run, meta, str(path))

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """The 'not a digit' probability of each crop ([N, 28, 28] in [0, 1], MNIST form)."""
        return self._run(np.ascontiguousarray(crops, np.float32))


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The gate network in a `digitrec train-gate` checkpoint and its facts, one clear error for any other file."""
    ckpt = load_checkpoint(path)
    meta = ckpt.get("gate")
    if not isinstance(meta, dict) or "threshold" not in meta or "args" not in meta:
        raise DigitrecError(f"letter gate {path}: not a gate checkpoint (made by `digitrec train-gate`)")
    try:
        model = gate_network(meta["args"])
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DigitrecError(f"letter gate {path}: its weights do not fit its network ({e})") from None
    return model.eval(), meta


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """Export a gate checkpoint to ONNX (any batch), its facts in the metadata, written atomically once ONNX
    Runtime's logits match PyTorch's within PARITY."""
    model, meta = load_model(checkpoint)
    gen = torch.Generator().manual_seed(0)
    checks = [torch.rand(n, 1, 28, 28, generator=gen) for n in (1, 3, 64)]
    return export_network_onnx(model, out, torch.rand(2, 1, 28, 28), {0: torch.export.Dim("batch", min=1)}, checks,
                               names=(INPUT, OUTPUT), tol=PARITY, what=str(checkpoint),
                               metadata={META: json.dumps(meta)})


def _meta(text: str | None) -> dict[str, Any] | None:
    """The gate facts stored in an export's metadata, or None when they are missing or unreadable."""
    try:
        meta = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("threshold"), (int, float)) else None
