"""The model registry: `create_model(name, **opts)` and `list_models()`.

Every model takes float images [B, 1, 28, 28] in [0, 1] (white ink on black) and returns logits [B, 10].
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from digitrec.errors import DigitrecError
from digitrec.models.cnn import CNN5, TutorialCNN
from digitrec.models.digitnet import DigitNet
from digitrec.models.lenet import LeNet5
from digitrec.models.stridenet import StrideNet


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its factory, the default options, and a line about it."""

    factory: Callable[..., nn.Module]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, ModelEntry] = {
    "lenet5": ModelEntry(LeNet5, "LeNet-5 of the tutorials (ReLU, avg-pool)"),
    "cnn": ModelEntry(TutorialCNN, "pytorch/examples CNN: 32/64 3x3 convs, fc 128, dropout"),
    "cnn5": ModelEntry(CNN5, "two padded 5x5 convs (16/32), fc 120-84-10"),
    "digitnet": ModelEntry(DigitNet, "BatchNorm residual CNN, fast on CPU (default)"),
    "digitnet-cbam": ModelEntry(DigitNet, "digitnet with CBAM attention", {"attention": True}),
    "digitnet-sep": ModelEntry(DigitNet, "digitnet with depthwise-separable convs", {"separable": True}),
    "digitnet-l": ModelEntry(
        DigitNet, "wider, deeper digitnet for GPU training", {"widths": (32, 64, 96), "depth": 2, "dropout": 0.1}
    ),
    "stridenet": ModelEntry(StrideNet, "full-resolution conv-BN stacks, strided 5x5 downsampling, dropout"),
}


def list_models() -> list[dict[str, Any]]:
    """Name, description, parameter count and fp32 size of every registered model."""
    rows = []
    for name, entry in REGISTRY.items():
        n = num_params(create_model(name))
        rows.append({"name": name, "description": entry.description, "params": n, "size_kb": round(n * 4 / 1024, 1)})
    return rows


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_options(name: str, **opts: Any) -> dict[str, Any]:
    """The full option set a model is built with: registry defaults overlaid with `opts`."""
    return {**_entry(name).defaults, **opts}


def create_model(name: str, **opts: Any) -> nn.Module:
    """Build a registered model by name; unknown names and options get one clear error."""
    entry = _entry(name)
    args = model_options(name, **opts)
    try:
        model = entry.factory(**args)
    except TypeError as e:
        params = inspect.signature(entry.factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [] if takes_any else sorted(k for k in opts if k not in params)
        if unknown or not opts:
            raise DigitrecError(f"model {name!r} does not take the options {unknown or sorted(opts)}: {e}") from None
        raise DigitrecError(f"model {name!r}: a value of the wrong type among {_plain(opts)} ({e})") from None
    except ValueError as e:
        raise DigitrecError(f"model {name!r}: {e}") from None
    model.digitrec_spec = {"name": name, "args": _plain(args)}
    return model


def _entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DigitrecError(f"unknown model {name!r}{hint} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
