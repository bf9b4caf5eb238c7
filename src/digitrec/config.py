"""Training settings: dataclass defaults < recipe < YAML file < command-line flags.

Unknown keys and bad values are rejected with a message that names the key and, where it can,
suggests the intended one. Nothing here is ever eval'd.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from digitrec.data.augment import AugmentConfig
from digitrec.errors import DigitrecError
from digitrec.files import atomic_path

OPTIMIZERS = ("sgd", "adam", "adamw", "radam")
SCHEDULES = ("onecycle", "cosine", "step", "plateau", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")


def _opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field that carries its CLI help text."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as config.yaml beside its checkpoints."""

    name: str = _opt("", "run name; the run is written to RUNS_DIR/NAME (default: MODEL-DATE-TIME)")
    runs_dir: str = _opt("runs", "folder that holds run folders")
    data_dir: str = _opt("", "folder with the four MNIST IDX files (default: $DIGITREC_DATA or ~/.cache/digitrec/mnist)")
    model: str = _opt("digitnet", "model name from `digitrec models`")
    model_args: dict = _opt({}, "model options, e.g. {attention: true}; on the CLI --model-arg KEY=VALUE")
    epochs: int = _opt(5, "number of passes over the training split")
    batch_size: int = _opt(128, "images per optimizer step across all processes (each of N takes 1/N), before accumulation")
    val_size: int = _opt(5000, "images carved from train for validation (model selection, early stopping)")
    split_seed: int = _opt(0, "seed of the train/validation split (kept apart from --seed)")
    train_subset: int = _opt(0, "train on only the first N training images (0 = all); for smoke runs")
    seed: int = _opt(0, "seed for weights, shuffling, augmentation and dropout")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    optimizer: str = _opt("sgd", f"one of {', '.join(OPTIMIZERS)}")
    lr: float = _opt(0.2, "learning rate (the peak rate for onecycle)")
    momentum: float = _opt(0.9, "SGD momentum, or Adam's beta1")
    nesterov: bool = _opt(True, "Nesterov momentum for SGD")
    weight_decay: float = _opt(5e-4, "weight decay (decoupled for AdamW)")
    schedule: str = _opt("onecycle", f"one of {', '.join(SCHEDULES)}; all but plateau step every batch")
    warmup_epochs: float = _opt(0.0, "linear warm-up length in epochs (onecycle: the rising phase, default 25%)")
    step_size: float = _opt(2.0, "step schedule: epochs between decays")
    gamma: float = _opt(0.1, "step and plateau schedules: factor applied to the rate at each decay")
    plateau_patience: int = _opt(1, "plateau schedule: epochs without validation improvement before a decay")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy loss (0 = off)")
    negatives: float = _opt(0.0, "add this fraction of each batch as images of two touching digits, trained toward "
                            "no class (0 = off); teaches a reader's classifier to refuse a piece that is not one digit")
    negatives_weight: float = _opt(0.5, "weight of the loss on those images (cross-entropy to the uniform distribution)")
    fonts: list = _opt([], "font files, folders or glob patterns that --font-digits renders digits from "
                       "(keep the fonts you evaluate on out of this list)")
    font_digits: float = _opt(0.0, "add this fraction of each batch as digits rendered from --fonts, framed as "
                              "MNIST frames a digit (0 = off)")
    font_variants: int = _opt(16, "renderings of each digit per font (random size, pen weight, slant, rotation)")
    font_sketch: float = _opt(0.0, "fraction of the font digits drawn as sketches: the strokes' outline, hollow or "
                              "hatched, as outline and sketch fonts draw them (0 = off)")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this value (0 = off)")
    accumulate: int = _opt(1, "accumulate gradients over N batches per optimizer step")
    amp: str = _opt("auto", "mixed precision: auto (bf16 on CUDA, off on CPU), off, bf16 or fp16 (CUDA only)")
    ema: float = _opt(0.0, "decay of an exponential moving average of the weights, e.g. 0.999 (0 = off)")
    patience: int = _opt(0, "stop after N epochs without validation improvement (0 = off)")
    save_every: int = _opt(0, "also keep a checkpoint every N epochs (0 = only last and best)")
    channels_last: bool = _opt(True, "channels-last memory format (faster convolutions on CPU and GPU)")
    compile: bool = _opt(False, "torch.compile the model")
    progress: bool = _opt(True, "show a progress bar (a line per epoch when not on a terminal)")
    tensorboard: bool = _opt(True, "write TensorBoard event files into the run folder")
    init: str = _opt("", "start from the weights of this checkpoint (its EMA weights when it kept one) or of a "
                         "shipped model ('default'), for fine-tuning; the model and its options must match "
                         "(--resume, which restores everything, takes precedence)")
    eval_test: bool = _opt(True, "evaluate the best checkpoint on the test set when training ends")
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"help": "augmentation settings"})

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-ready dict of every setting."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise DigitrecError naming the first bad value and what is expected."""
        for f in fields(self):
            value = getattr(self, f.name)
            _check(f.name, not isinstance(value, float) or math.isfinite(value), "a finite number")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        for key in ("epochs", "batch_size", "accumulate"):
            _check(key, getattr(self, key) >= 1, "an integer >= 1")
        _check("val_size", self.val_size >= 1, "an integer >= 1: the best checkpoint, early stopping and the "
               "plateau schedule are all judged on the validation split")
        _check("name", self.name in ("", Path(self.name).name) and self.name not in (".", ".."),
               "a plain folder name, without '/' or '..' (the run is written to RUNS_DIR/NAME)")
        _check("runs_dir", not Path(self.runs_dir).exists() or Path(self.runs_dir).is_dir(), "a folder, not a file")
        for key in ("train_subset", "patience", "save_every", "plateau_patience", "seed", "split_seed"):
            _check(key, getattr(self, key) >= 0, "an integer >= 0")
        _check("lr", self.lr > 0, "a number > 0")
        for key in ("weight_decay", "grad_clip", "warmup_epochs"):
            _check(key, getattr(self, key) >= 0, "a number >= 0")
        _check("step_size", self.step_size > 0, "a number > 0")
        _check("momentum", 0 <= self.momentum < 1, "a number in [0, 1)")
        _check("gamma", 0 < self.gamma <= 1, "a number in (0, 1]")
        _check("label_smoothing", 0 <= self.label_smoothing < 1, "a number in [0, 1)")
        _check("negatives", 0 <= self.negatives <= 1, "a fraction of the batch in [0, 1]")
        _check("negatives_weight", self.negatives_weight >= 0, "a number >= 0")
        _check("font_digits", 0 <= self.font_digits <= 1, "a fraction of the batch in [0, 1]")
        _check("font_variants", self.font_variants >= 1, "an integer >= 1")
        _check("font_sketch", 0 <= self.font_sketch <= 1, "a fraction of the font digits in [0, 1]")
        _check("fonts", not self.font_digits or bool(self.fonts), "font files or folders when font_digits > 0")
        _check("ema", self.ema == 0 or 0 < self.ema < 1, "0 (off) or a decay in (0, 1), e.g. 0.999")
        _check("warmup_epochs", self.warmup_epochs < self.epochs or self.warmup_epochs == 0, "shorter than epochs")
        _check("device", valid_device(self.device), "auto, cpu, cuda or cuda:N")
        self.augment.validate()


def valid_device(device: str) -> bool:
    """Whether `device` names one we can train or evaluate on: auto, cpu, cuda or cuda:N."""
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


def _check(key: str, ok: bool, expected: str) -> None:
    if not ok:
        raise DigitrecError(f"config value {key} is invalid: expected {expected}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DigitrecError(f"config value {key}={value!r} is not one of {', '.join(choices)}{_suggest(value, choices)}")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# Named starting points; a recipe only sets values, and a YAML file or flags still win over it.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "tutorial": {
        # The PyTorch tutorials' LeNet-5 recipe: Adam 1e-3, batch 64, 10 epochs, nothing else.
        "model": "lenet5", "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 10,
        "schedule": "constant", "label_smoothing": 0.0, "weight_decay": 0.0, "augment": {"enabled": False},
        # LeNet's convs are too small for channels-last to pay; torch.compile fuses its pools and
        # activations, about 1.2x per epoch on a 2-core CPU (benchmarks/train_speed.py).
        "channels_last": False, "compile": True,
    },
    "fast": {
        # The quickest way we know to 99.5% on a CPU (benchmarks/train_speed.py): a slimmer digitnet
        # (the 7x7 stage is 48 wide, ~20% fewer multiply-adds), 4 one-cycle epochs with a short
        # warm-up, an EMA of the weights for evaluation, and only the cheap affine augmentations.
        # torch.compile stays off: its start-up costs more seconds than it saves in so short a run.
        "model": "digitnet", "model_args": {"widths": [16, 32, 48]}, "epochs": 4, "batch_size": 128,
        "optimizer": "sgd", "lr": 0.2, "schedule": "onecycle", "warmup_epochs": 0.3, "label_smoothing": 0.1,
        "ema": 0.99, "channels_last": True,
        "augment": {"enabled": True, "rotate": 8.0, "scale": 0.08, "translate": 0.08, "shear": 0.0, "contrast": 0.0},
    },
}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with a clear error for a missing or malformed file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DigitrecError(f"config file {p}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DigitrecError(f"config file {p}: not a text file (expected UTF-8 YAML)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DigitrecError(f"config file {p}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DigitrecError(f"config file {p}: expected a mapping of settings, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Overlay `over` on `base`, one level deep for nested sections such as augment."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "model_args":
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def build_config(recipe: str = "default", *layers: dict[str, Any], source: str = "config") -> TrainConfig:
    """Resolve defaults < recipe < each layer in order, then validate."""
    if recipe not in RECIPES:
        raise DigitrecError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}{_suggest(recipe, RECIPES)}")
    merged: dict[str, Any] = dict(RECIPES[recipe])
    for layer in layers:
        merged = merge(merged, layer)
    cfg = from_dict(merged, source=source)
    cfg.validate()
    return cfg


def from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a TrainConfig from a dict, rejecting unknown keys and values of the wrong type."""
    data = dict(data)
    aug = data.pop("augment", None) or {}
    if not isinstance(aug, dict):
        raise DigitrecError(f"{source}: augment must be a mapping of augmentation settings")
    kwargs = _coerce_all(TrainConfig, data, source, prefix="")
    kwargs["augment"] = AugmentConfig(**_coerce_all(AugmentConfig, aug, source, prefix="augment."))
    return TrainConfig(**kwargs)


def _coerce_all(cls: type, data: dict[str, Any], source: str, prefix: str) -> dict[str, Any]:
    known = {f.name: f for f in fields(cls) if f.name != "augment"}
    out = {}
    for key, value in data.items():
        if key not in known:
            raise DigitrecError(f"{source}: unknown setting {prefix}{key}{_suggest(key, known)}")
        out[key] = _coerce(f"{prefix}{key}", value, known[key], source)
    return out


def _coerce(key: str, value: Any, f: dataclasses.Field, source: str) -> Any:
    kind = type(f.default) if f.default is not dataclasses.MISSING else type(f.default_factory())
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            return "" if value is None else str(value)
        if kind is tuple:
            return tuple(float(v) for v in value)
        if kind is list:
            return [str(value)] if isinstance(value, str) else [str(v) for v in value]
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise DigitrecError(f"{source}: {key}={value!r} is not a valid {kind.__name__}")


def save_yaml(data: dict[str, Any], path: str | Path) -> Path:
    """Write a dict as YAML atomically (temp file, then rename)."""
    p = Path(path)
    with atomic_path(p) as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(_plain(data), fh, sort_keys=False)
    return p


def _plain(obj: Any) -> Any:
    """Tuples become lists so the YAML stays portable."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
