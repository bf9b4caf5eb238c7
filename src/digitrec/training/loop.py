"""The training loop: data on the device, batches by indexing, one readable epoch function.

Every epoch draws its permutation and augmentation from a generator seeded by (seed, epoch), and
reseeds the global RNG (dropout) the same way, so a run resumed from the end of any epoch
replays the same numbers as an uninterrupted one.

Under torchrun the same function trains data-parallel: every rank draws the same permutation and
takes a disjoint shard of each global batch (batch_size counts images across all ranks), DDP
averages the gradients, metrics are summed across ranks, and rank 0 alone writes files.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from digitrec.card import make_card
from digitrec.config import TrainConfig, save_yaml
from digitrec.data.augment import Augment
from digitrec.data.fetch import MNIST_FILES
from digitrec.data.fonts import render_font_digits, resolve_fonts
from digitrec.data.mnist import Split, load_splits
from digitrec.data.negatives import touching_pairs, uniform_loss
from digitrec.errors import DigitrecError
from digitrec.models import create_model, num_params
from digitrec.models.inference import batched_logits
from digitrec.training.checkpoint import check_model, init_weights, load_checkpoint, load_weights, save_checkpoint, unwrap
from digitrec.training.distributed import World, all_reduce_sum, setup, teardown, world_from_env
from digitrec.training.optim import EMA, build_optimizer, build_scheduler

Log = Callable[[str], None]


@dataclass
class Hooks:
    """Optional callbacks: after every optimizer step, and after every epoch (with the eval model)."""

    on_step: Callable[[int, int], None] | None = None
    on_epoch: Callable[[dict[str, Any], nn.Module], None] | None = None


@dataclass
class TrainState:
    """What changes while training and must be saved to resume exactly."""

    epoch: int = 0
    step: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    train_time: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DigitrecError(f"device {name!r} was asked for, but CUDA is not available here; use --device cpu")
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device, log: Log) -> torch.dtype | None:
    """The autocast dtype, or None; mixed precision is a no-op on CPU, and says so."""
    if device.type != "cuda":
        if mode in ("bf16", "fp16"):
            log(f"amp={mode} has no effect on {device.type}: training in float32")
        return None
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)


def run_dir_for(cfg: TrainConfig) -> Path:
    """runs_dir/name, naming the run after the model and the time when no name is given."""
    name = cfg.name or f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.runs_dir) / name


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    log: Log = print,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Train a model as `cfg` says; returns a summary with the run folder, the best validation accuracy
    and the model as last evaluated (the EMA weights when ema is on). Under torchrun, trains
    data-parallel across the ranks."""
    cfg.validate()
    world = world_from_env()
    if world.size > 1 and cfg.batch_size % world.size:
        raise DigitrecError(
            f"batch_size {cfg.batch_size} is the global batch and must divide evenly among {world.size} processes"
        )
    device = setup(world, resolve_device(cfg.device))
    try:
        return _train(cfg, world, device, resume, overwrite, log if world.is_main else _silent, hooks or Hooks())
    finally:
        teardown(world)


def _silent(_msg: str) -> None:
    """The log of ranks other than 0."""


def _train(cfg: TrainConfig, world: World, device: torch.device, resume, overwrite: bool, log: Log,
           hooks: Hooks) -> dict[str, Any]:
    amp_dtype = resolve_amp(cfg.amp, device, log)
    run_dir = run_dir_for(cfg)
    if resume is None and (run_dir / "last.pt").exists() and not overwrite:
        raise DigitrecError(
            f"run folder {run_dir} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or --name for a new one"
        )
    if resume is None and overwrite and world.is_main:  # the replaced run's extra checkpoints and curves go too
        for stale in [*run_dir.glob("epoch[0-9][0-9][0-9].pt"), *(run_dir / "tensorboard").glob("events.out.*")]:
            stale.unlink()
    splits = load_splits(cfg.data_dir or None, val_size=cfg.val_size, split_seed=cfg.split_seed, log=log)
    train_split = splits["train"]
    if cfg.train_subset:
        train_split = Split(train_split.images[: cfg.train_subset], train_split.labels[: cfg.train_subset])
    train_split, val_split = train_split.to(device), splits["val"].to(device)
    fonts = _font_digits(cfg, device, log)
    steps_per_epoch = len(train_split) // cfg.batch_size
    if steps_per_epoch < cfg.accumulate:
        raise DigitrecError(
            f"batch_size {cfg.batch_size} x accumulate {cfg.accumulate} is larger than the {len(train_split)} "
            "training images; lower one of them"
        )

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_args)
    if cfg.init and resume is None:
        init_weights(model, cfg.init)
        log(f"starting from the weights of {cfg.init}")
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch // cfg.accumulate)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = EMA(model, cfg.ema) if cfg.ema else None
    eval_model = copy.deepcopy(model) if ema else model
    state = TrainState()
    if resume is not None:
        state = _restore(Path(resume), cfg, model, opt, sched, scaler, ema, log)
    if world.is_main:  # only once the data, the model and any checkpoint have loaded: a failed start leaves no folder
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg.to_dict(), run_dir / "config.yaml")
    net: nn.Module = model
    if world.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net
    writer = _tensorboard(cfg, run_dir, log) if world.is_main else None
    spec = model.digitrec_spec
    where = f"{world.size} processes ({device.type})" if world.distributed else str(device)
    log(f"training {spec['name']} ({num_params(model):,} parameters) on {where} for {cfg.epochs} epochs; run: {run_dir}")

    augment = Augment(cfg.augment)
    while state.epoch < cfg.epochs:
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        record = _train_epoch(fwd, net, model, train_split, fonts, cfg, world, epoch, opt, sched, scaler, ema,
                              augment, amp_dtype, state, hooks)
        state.train_time += time.perf_counter() - t0
        if ema:
            eval_model.load_state_dict(ema.state_dict())
        t1 = time.perf_counter()
        record.update(_validate(eval_model, val_split, cfg, world), val_time=round(time.perf_counter() - t1, 3))
        record.update(epoch=epoch, lr=opt.param_groups[0]["lr"], train_time=round(state.train_time, 3))
        if cfg.schedule == "plateau" and "val_acc" in record:
            sched.step(record["val_acc"])
        state.epoch = epoch
        state.history.append(record)
        improved = _track_best(state, record)
        _log_epoch(record, cfg, log, writer)
        if hooks.on_epoch and world.is_main:
            hooks.on_epoch(record, eval_model)
        if world.is_main:
            _save(cfg, run_dir, _checkpoint(cfg, model, opt, sched, scaler, ema, state), epoch, improved)
        if cfg.patience and state.bad_epochs >= cfg.patience:
            log(f"early stop: validation accuracy has not improved for {state.bad_epochs} epochs")
            break
    if writer:
        writer.close()
    return {
        "run_dir": str(run_dir),
        "best_checkpoint": str(run_dir / "best.pt"),
        "best_val_acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "train_time": state.train_time,
        "history": state.history,
        "model": eval_model,
    }


def _font_digits(cfg: TrainConfig, device: torch.device, log: Log) -> Split | None:
    """The digits rendered from cfg.fonts that each batch mixes in (on `device`), or None when font_digits is off."""
    if not cfg.font_digits:
        return None
    files = resolve_fonts(cfg.fonts)
    digits = render_font_digits(files, cfg.font_variants, seed=cfg.seed, log=log, sketch=cfg.font_sketch)
    log(f"font digits: {len(digits):,} images from {len(files)} font files; {cfg.font_digits:g} of each batch")
    return digits.to(device)


def _save(cfg: TrainConfig, run_dir: Path, ckpt: dict[str, Any], epoch: int, improved: bool) -> None:
    save_checkpoint(ckpt, run_dir / "last.pt")
    if improved:
        save_checkpoint(ckpt, run_dir / "best.pt")
    if cfg.save_every and epoch % cfg.save_every == 0:
        save_checkpoint(ckpt, run_dir / f"epoch{epoch:03d}.pt")


def _train_epoch(fwd, net, model, data, fonts, cfg, world, epoch, opt, sched, scaler, ema, augment, amp_dtype,
                 state, hooks) -> dict:
    """One pass over the shuffled training split; returns the epoch's loss, accuracy and speed.

    `net` is what runs backward (the DDP wrapper when distributed), `model` the plain module under it.
    """
    device = data.images.device
    base = cfg.seed * 1_000_003 + epoch
    gen = torch.Generator(device).manual_seed(base)
    perm = torch.randperm(len(data), generator=gen, device=device)  # the same on every rank
    if world.rank:  # each rank augments (and drops out) its own shard with its own random numbers
        gen = torch.Generator(device).manual_seed(base + 7919 * world.rank)
    torch.manual_seed(base + 7919 * world.rank)
    steps = len(data) // cfg.batch_size
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    labelled = 0
    bar = _progress(cfg, steps, epoch) if world.is_main else None
    t0 = time.perf_counter()
    for b in range(steps):
        idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size][world.rank :: world.size]
        x, y = _compose_batch(data, fonts, idx, cfg, gen)
        x = augment(x, gen)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        stepping = (b + 1) % cfg.accumulate == 0
        # DDP all-reduces gradients on every backward unless told to wait for the last micro-batch.
        sync = nullcontext() if stepping or not world.distributed else net.no_sync()
        with sync, torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
            out = fwd(x)
            logits = out[: len(y)]  # the digits; any rows after them are the negatives
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if len(out) > len(y):
                loss = loss + cfg.negatives_weight * uniform_loss(out[len(y):])
            scaler.scale(loss / cfg.accumulate).backward()
        loss_sum += loss.detach()
        correct += (logits.argmax(1) == y).sum()
        labelled += len(y)
        if stepping:
            _optimizer_step(model, cfg, opt, sched, scaler, ema, state.step)
            state.step += 1
            if hooks.on_step:
                hooks.on_step(epoch, state.step)
        if bar is not None and (b % 20 == 0 or b == steps - 1):
            seen = (b + 1) * len(idx)
            bar.set_postfix(loss=f"{loss_sum.item() / (b + 1):.3f}", acc=f"{100 * correct.item() / labelled:.2f}%",
                            lr=f"{opt.param_groups[0]['lr']:.3g}", ips=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(b + 1 - bar.n)
    if bar is not None:
        bar.close()
    local = [loss_sum.item(), correct.item(), labelled]  # waits for the device, so the time below includes its work
    seconds = time.perf_counter() - t0
    n = steps * cfg.batch_size
    totals = all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=device), world).tolist()
    return {"train_loss": totals[0] / (steps * world.size), "train_acc": totals[1] / totals[2],
            "images_per_s": round(n / seconds, 1), "epoch_time": round(seconds, 3)}


def _compose_batch(data: Split, fonts: Split | None, idx: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch as float images [B', 1, 28, 28] and labels: its MNIST digits, then any font digits (labelled),
    then any touching pairs (unlabelled, so they come last; `logits[:len(y)]` are the labelled rows)."""
    x = data.images[idx].unsqueeze(1).float().div_(255)
    y = data.labels[idx]
    if fonts is not None:
        pick = torch.randint(len(fonts), (round(cfg.font_digits * len(idx)),), generator=gen, device=x.device)
        x = torch.cat([x, fonts.images[pick].unsqueeze(1).float().div_(255)])
        y = torch.cat([y, fonts.labels[pick]])
    if cfg.negatives:  # augmented with the digits, so only their content tells them apart
        x = torch.cat([x, touching_pairs(x, round(cfg.negatives * len(idx)), gen)])
    return x, y


def _optimizer_step(model, cfg, opt, sched, scaler, ema, step: int) -> None:
    if cfg.grad_clip:
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    if cfg.schedule != "plateau":
        sched.step()
    if ema:
        ema.update(model, step)


def _validate(model: nn.Module, val: Split, cfg: TrainConfig, world: World) -> dict[str, float]:
    """Loss and accuracy on the validation split, each rank scoring its own slice of it."""
    if len(val) == 0:
        return {}
    images, labels = val.images[world.rank :: world.size], val.labels[world.rank :: world.size]
    logits = batched_logits(model, images, channels_last=cfg.channels_last)
    sums = torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(),
                        (logits.argmax(1) == labels).sum().double()])
    loss, correct = all_reduce_sum(sums, world).tolist()
    return {"val_loss": loss / len(val), "val_acc": correct / len(val)}


def _track_best(state: TrainState, record: dict[str, Any]) -> bool:
    """Best is chosen on validation accuracy (the last epoch when there is no validation split)."""
    score = record.get("val_acc", record["epoch"])
    if score > state.best_val_acc:
        state.best_val_acc, state.best_epoch, state.bad_epochs = score, record["epoch"], 0
        return True
    state.bad_epochs += 1
    return False


def _checkpoint(cfg, model, opt, sched, scaler, ema, state: TrainState) -> dict[str, Any]:
    plain = unwrap(model)
    spec = plain.digitrec_spec
    metrics = {"val_acc": state.history[-1].get("val_acc"), "epoch": state.epoch}
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "model": spec,
        "model_state": plain.state_dict(),
        "ema_state": ema.state_dict() if ema else None,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "train_state": {k: v for k, v in vars(state).items()},
        "config": cfg.to_dict(),
        "card": make_card(spec["name"], spec["args"], num_params(plain), cfg.to_dict(), MNIST_FILES, metrics),
    }


STEP_SHAPING = ("batch_size", "accumulate", "train_subset", "schedule")  # what a resumed run may not change


def _restore(path: Path, cfg, model, opt, sched, scaler, ema, log: Log) -> TrainState:
    """Load everything a checkpoint holds into the freshly built objects, after checking it fits."""
    ckpt = load_checkpoint(path)
    check_model(ckpt, model, f"checkpoint {path}", "resume with the checkpoint's own model")
    saved = ckpt.get("config") or {}
    for key in STEP_SHAPING:
        if key in saved and saved[key] != getattr(cfg, key):
            raise DigitrecError(f"checkpoint {path} was trained with {key}={saved[key]!r}, not {getattr(cfg, key)!r}: "
                                "a resumed run keeps it, as its schedule counts optimizer steps; to train on with other "
                                f"settings, start a new run from its weights with --init {path}")
    load_weights(model, ckpt["model_state"], f"checkpoint {path}")
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    if ema and ckpt.get("ema_state"):
        ema.load_state_dict(ckpt["ema_state"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    state = TrainState(**ckpt["train_state"])
    log(f"resumed from {path} at epoch {state.epoch} (step {state.step})")
    return state


def _progress(cfg: TrainConfig, steps: int, epoch: int):
    """A tqdm bar on a terminal; None elsewhere (the epoch line is logged either way)."""
    if not (cfg.progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, dynamic_ncols=True, unit="batch")


def _tensorboard(cfg: TrainConfig, run_dir: Path, log: Log):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("tensorboard is not installed: no event files will be written (pip install tensorboard)")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _log_epoch(record: dict[str, Any], cfg: TrainConfig, log: Log, writer) -> None:
    val = f"  val loss {record['val_loss']:.4f} acc {100 * record['val_acc']:.2f}%" if "val_acc" in record else ""
    log(
        f"epoch {record['epoch']}/{cfg.epochs}  train loss {record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%"
        f"{val}  lr {record['lr']:.3g}  {record['images_per_s']:.0f} img/s  {record['epoch_time']:.1f}s"
    )
    if writer:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"):
            if key in record and not math.isnan(record[key]):
                writer.add_scalar(key.replace("_", "/", 1), record[key], record["epoch"])
        writer.flush()
