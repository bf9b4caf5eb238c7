"""Checkpoints: atomic save, weights-only load, and the model rebuilt from what a checkpoint says.

A checkpoint is a dict of tensors and plain values, so `torch.load(weights_only=True)` reads it.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitrec.errors import DigitrecError
from digitrec.files import atomic_path
from digitrec.models import create_model

FORMAT = "digitrec-checkpoint"
VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP and torch.compile wrappers, so saved keys carry no prefixes."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint atomically: a temp file in the same folder, then a rename."""
    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a digitrec checkpoint, with one clear error for a missing, corrupt or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise DigitrecError(f"checkpoint {p}: no such file")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for a foreign or damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DigitrecError(f"checkpoint {p}: not a readable PyTorch checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DigitrecError(f"checkpoint {p}: a PyTorch file, but not a digitrec checkpoint (no '{FORMAT}' marker)")
    if ckpt.get("version", 0) > VERSION:
        raise DigitrecError(f"checkpoint {p}: written by a newer digitrec (format {ckpt['version']} > {VERSION})")
    return ckpt


def inference_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to predict with: the moving average when the run kept one (it was validated)."""
    return ckpt.get("ema_state") or ckpt["model_state"]


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild the registered model a checkpoint names and load its inference weights."""
    check_classifier(ckpt, source)
    spec = ckpt.get("model") or {}
    model = create_model(spec.get("name", "?"), **spec.get("args", {}))
    load_weights(model, inference_state(ckpt), source)
    return model.eval()


def release_checkpoint(ckpt: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint to ship: inference weights, model spec, config, card and history; no optimizer state."""
    card = dict(ckpt.get("card", {}))
    card["metrics"] = {**card.get("metrics", {}), **metrics}
    history = ckpt.get("train_state", {}).get("history", [])
    return {
        "model": ckpt["model"],
        "model_state": {k: v.clone() for k, v in inference_state(ckpt).items()},
        "config": ckpt.get("config", {}),
        "card": card,
        "train_state": {"epoch": ckpt.get("train_state", {}).get("epoch"), "history": history},
    }


def shipped_weights(name: str) -> Path:
    """The path of a weight file shipped inside the package (src/digitrec/weights/NAME), present or not."""
    return Path(str(resources.files("digitrec") / "weights" / name))


def check_classifier(ckpt: dict[str, Any], source: str) -> None:
    """Raise a DigitrecError naming what a letter gate's or line reader's checkpoint is, where a digit
    classifier's is expected (they hold weights too, but of another network)."""
    for key, what, verb, flag in (("gate", "letter gate", "train-gate", "--gate"),
                                  ("linenet", "line reader", "train-lines", "--lines")):
        if key in ckpt:
            raise DigitrecError(f"{source}: a {what} checkpoint (made by `digitrec {verb}`), not a digit "
                                f"classifier; give it to `digitrec predict {flag}`")


def check_model(ckpt: dict[str, Any], model: nn.Module, source: str, hint: str) -> None:
    """Raise a DigitrecError when the checkpoint is for another registered model or other model options."""
    check_classifier(ckpt, source)
    spec, want = ckpt.get("model") or {}, getattr(model, "digitrec_spec", {})
    if spec.get("name") != want.get("name") or spec.get("args") != want.get("args"):
        raise DigitrecError(
            f"{source} is for model {spec.get('name')!r} {spec.get('args')}, but this run builds "
            f"{want.get('name')!r} {want.get('args')}; {hint}"
        )


def init_weights(model: nn.Module, source: str) -> None:
    """Load the inference weights of a checkpoint, or of a shipped model by name ('default'), into `model`
    to fine-tune it; the checkpoint must be for the same model with the same options."""
    path = Path(source)
    if not path.suffix and not path.exists():
        path = shipped_weights(f"{source}.pt")
        if not path.is_file():
            raise DigitrecError(f"init {source!r}: neither a checkpoint file nor a shipped model name (default)")
    ckpt = load_checkpoint(path)
    check_model(ckpt, model, f"init checkpoint {path}", "pass --model and --model-arg to match it")
    load_weights(model, inference_state(ckpt), f"init checkpoint {path}")


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with a message that says which model the weights do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        name = getattr(model, "digitrec_spec", {}).get("name", type(model).__name__)
        detail = str(e).splitlines()[0]
        raise DigitrecError(f"{source}: its weights do not fit model {name!r} ({detail})") from None
