"""Runners that turn a batch of 28x28 images into class probabilities, behind one interface.

PyTorch eager runs checkpoints; exported files run on ONNX Runtime (.onnx, fp32 or int8), torch.export
(.pt2) or TorchScript (.torchscript, deprecated in PyTorch). The file type picks the runner; a backend
named for a checkpoint runs its export (made once, cached). The built-in default model runs the int8 ONNX
export shipped beside its weights unless another backend is named. One ONNX Runtime session per file
per process, shared across threads.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import threading
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from digitrec import __version__
from digitrec.data.fetch import sha256_file
from digitrec.errors import DigitrecError
from digitrec.exporter import FORMATS, SUFFIX_KIND, Loaded, export, load_export, open_onnx_session
from digitrec.training.checkpoint import load_checkpoint, model_from_checkpoint

BACKENDS = ("torch", "pt2", "torchscript", "onnx", "onnx-int8")
_LABELS = {"torch": "PyTorch checkpoint", "pt2": "torch.export (.pt2)", "torchscript": "TorchScript",
           "onnx": "ONNX", "onnx-int8": "ONNX int8"}
CHECKPOINT_SUFFIXES = (".pt", ".pth")


class Backend(Protocol):
    """Anything that maps float32 [B, 1, 28, 28] in [0, 1] to probabilities [B, 10] (and to logits)."""

    name: str
    card: dict

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """PyTorch eager inference; several models are averaged (an ensemble) in probability space."""

    name = "torch"

    def __init__(self, models: list[nn.Module], cards: list[dict]) -> None:
        self.models = [m.eval() for m in models]
        self.card = cards[0] if len(cards) == 1 else {"ensemble": cards}

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        probs = sum(m(x).float().softmax(1) for m in self.models) / len(self.models)
        return probs.numpy()

    @torch.inference_mode()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits [B, 10]; for an ensemble, the log of the mean probability (what its export computes)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if len(self.models) == 1:
            return self.models[0](x).float().numpy()
        logp = torch.stack([m(x).float().log_softmax(1) for m in self.models])
        return (torch.logsumexp(logp, 0) - float(np.log(len(self.models)))).numpy()


class ExportedBackend:
    """An exported network (ONNX Runtime, torch.export or TorchScript) behind the Backend interface."""

    def __init__(self, loaded: Loaded, path: Path) -> None:
        self._run = loaded.run
        self.card = loaded.card
        self.name = loaded.format
        self.path = path

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        z = self.logits(batch)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def torch_backend(paths: list[Path], name: str) -> TorchBackend:
    """Load one checkpoint (or several, averaged) for eager PyTorch inference."""
    models, cards = [], []
    for path in paths:
        ckpt = load_checkpoint(path)
        models.append(model_from_checkpoint(ckpt, source=f"model {path}"))
        cards.append(ckpt.get("card", {}))
    if not models:
        raise DigitrecError(f"model {name!r}: no weight files found")
    return TorchBackend(models, cards)


def load_backend(path_or_name: str | Path, backend: str | None = None) -> Backend:
    """A backend for a built-in name ('default', ...), a checkpoint, or an exported file.

    The file type picks the runner (.pt/.pth: torch, .onnx: ONNX Runtime, .pt2, .torchscript). A named
    `backend` must agree with an exported file; for a checkpoint it runs that checkpoint's export.
    """
    from digitrec.read.recognizer import resolve_model  # the built-in names live with the reader (no cycle)

    if backend is not None and backend not in BACKENDS:
        close = difflib.get_close_matches(backend, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DigitrecError(f"unknown backend {backend!r}{hint} (known: {', '.join(BACKENDS)})")
    paths = resolve_model(path_or_name)
    path = paths[0]
    if file_kind(path) == "torch":
        if backend is None:
            # A built-in model reads through its shipped int8 export when there is one (accuracy-gated at export:
            # the same reading figures as fp32, 2-2.5x faster on a line's batch of candidates), else fp32 ONNX.
            backend = next((b for b in ("onnx-int8", "onnx") if shipped_export(paths, str(path_or_name), b)), None)
        if backend in (None, "torch"):
            return torch_backend(paths, str(path_or_name))
        path = exported(paths, str(path_or_name), backend)
    kind = file_kind(path, backend)
    session = shared_session(path) if kind == "onnx" else None
    loaded = load_export(path, kind, session=session)
    if backend in ("onnx", "onnx-int8") and loaded.format in ("onnx", "onnx-int8") and backend != loaded.format:
        raise DigitrecError(f"model {path}: an {_LABELS[loaded.format]} file, but backend {backend!r} was asked for")
    return ExportedBackend(loaded, path)


def file_kind(path: Path, backend: str | None = None) -> str:
    """Which runner a file needs: torch, onnx, pt2 or torchscript (from the file type, checked against `backend`)."""
    found = "torch" if path.suffix.lower() in CHECKPOINT_SUFFIXES else SUFFIX_KIND.get(path.suffix.lower())
    if found == "torch" and _is_torchscript(path):
        found = "torchscript"  # TorchScript saved under .pt, as tutorials often do
    if backend is None:
        if found is None:
            known = ", ".join([*CHECKPOINT_SUFFIXES, *SUFFIX_KIND])
            raise DigitrecError(f"model {path}: unknown file type {path.suffix or '(none)'!r}; expected one of "
                                f"{known}, or name the backend")
        return found
    wanted = "onnx" if backend.startswith("onnx") else backend
    if found is not None and found != wanted:
        raise DigitrecError(f"model {path}: {_LABELS[found]} files cannot run on backend {backend!r}")
    return wanted


def shipped_export(paths: list[Path], name: str, backend: str) -> Path | None:
    """The `backend` export shipped beside a built-in model's weights (weights/NAME.onnx, ...), if there is one."""
    from digitrec.read.recognizer import BUILTIN

    if name not in BUILTIN:
        return None
    shipped = paths[0].with_name(f"{name}{FORMATS[backend].suffix}")
    return shipped if shipped.is_file() else None


def exported(paths: list[Path], name: str, backend: str) -> Path:
    """The `backend` export of checkpoint(s): shipped beside the built-in weights, else made once and cached.

    The cache ($DIGITREC_EXPORTS, default ~/.cache/digitrec/exports) is keyed by the checkpoints' contents.
    """
    if shipped := shipped_export(paths, name, backend):
        return shipped
    fmt = FORMATS[backend]
    key = hashlib.sha256("|".join([backend, __version__, torch.__version__, *map(sha256_file, paths)]).encode())
    root = os.environ.get("DIGITREC_EXPORTS")
    folder = Path(root).expanduser() if root else Path.home() / ".cache" / "digitrec" / "exports"
    out = folder / key.hexdigest()[:20] / f"model{fmt.suffix}"
    if not out.is_file():
        # A first use exports and checks on 1,000 test images; later loads reuse the file.
        export(paths[0] if len(paths) == 1 else paths, format=backend, out=out, parity_images=1000)
    return out


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (NAME/code/...); checkpoints written by torch.save do not."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


_SESSIONS: dict[tuple, Any] = {}
_SESSIONS_LOCK = threading.Lock()


def shared_session(path: Path) -> Any:
    """The process's one ONNX Runtime session for `path` (reopened if the file changed); run() is thread-safe."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            for stale in [k for k in _SESSIONS if k[0] == key[0]]:
                del _SESSIONS[stale]
            _SESSIONS[key] = open_onnx_session(path)
        return _SESSIONS[key]
