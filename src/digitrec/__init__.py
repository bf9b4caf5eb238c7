"""digitrec: handwritten-digit recognition on PyTorch.

Imports are lazy so that `import digitrec` is fast and has no side effects.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DigitrecError": ("digitrec.errors", "DigitrecError"),
    "TrainConfig": ("digitrec.config", "TrainConfig"),
    "create_model": ("digitrec.models", "create_model"),
    "list_models": ("digitrec.models", "list_models"),
    "train": ("digitrec.training.loop", "train"),
    "evaluate": ("digitrec.evaluation", "evaluate_checkpoint"),
    "export": ("digitrec.exporter", "export"),
    "Recognizer": ("digitrec.read.recognizer", "Recognizer"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'digitrec' has no attribute {name!r}")
