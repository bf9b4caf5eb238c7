"""Optimizers, learning-rate schedules and the exponential moving average of weights."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from digitrec.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam, AdamW or RAdam; no weight decay on BatchNorm and biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    betas = (cfg.momentum, 0.999)
    # One fused kernel per step instead of a handful of ops per tensor: small models are step-bound.
    fused = {"fused": True} if next(model.parameters()).device.type in ("cpu", "cuda") else {}
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and cfg.momentum > 0
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, **fused)
    return torch.optim.RAdam(groups, lr=cfg.lr, betas=betas)


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> LRScheduler | ReduceLROnPlateau:
    """A per-step schedule (warm-up, then the named shape), or ReduceLROnPlateau stepped per epoch."""
    if cfg.schedule == "plateau":
        return ReduceLROnPlateau(opt, mode="max", factor=cfg.gamma, patience=cfg.plateau_patience)
    total = max(cfg.epochs * steps_per_epoch, 1)
    default_warmup = 0.25 * cfg.epochs if cfg.schedule == "onecycle" else 0.0
    warmup = round((cfg.warmup_epochs or default_warmup) * steps_per_epoch)
    shape = _SHAPES[cfg.schedule](cfg, steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            # onecycle starts at lr/25 as torch's OneCycleLR does; plain warm-up starts near zero.
            start = 1 / 25 if cfg.schedule == "onecycle" else 1 / max(warmup, 1)
            return start + (1 - start) * step / warmup
        return shape((step - warmup) / max(total - warmup, 1), step)

    return LambdaLR(opt, factor)


def _cosine(cfg: TrainConfig, steps_per_epoch: int):
    return lambda t, step: 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _onecycle(cfg: TrainConfig, steps_per_epoch: int):
    # Anneal to lr/1e4 like OneCycleLR's final_div_factor, so the last epoch fine-tunes.
    return lambda t, step: 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _step(cfg: TrainConfig, steps_per_epoch: int):
    every = max(round(cfg.step_size * steps_per_epoch), 1)
    return lambda t, step: cfg.gamma ** (step // every)


def _constant(cfg: TrainConfig, steps_per_epoch: int):
    return lambda t, step: 1.0


_SHAPES = {"cosine": _cosine, "onecycle": _onecycle, "step": _step, "constant": _constant}


class EMA:
    """An exponential moving average of a model's weights (buffers copied as they are).

    The decay warms up as min(decay, (1 + step) / (10 + step)), so early averages are not
    dominated by the random initial weights; the step comes from the saved training state,
    which keeps resume exact.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        averaged, current = [], []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                averaged.append(self.shadow[k])
                current.append(v.detach())
            else:
                self.shadow[k].copy_(v)
        # One fused kernel for all the weights rather than one per tensor (which a GPU pays for in launches).
        torch._foreach_lerp_(averaged, current, 1 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)
