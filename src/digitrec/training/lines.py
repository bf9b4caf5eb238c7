"""Training the line reader (LineNet) with CTC on synthetic lines of MNIST training digits.

Validation lines are made from the validation digits only; the test split is never touched.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from digitrec.data.lines import LineStyle, glyphs, make_lines
from digitrec.data.mnist import Split
from digitrec.errors import DigitrecError
from digitrec.models.linenet import LineNet, frame_count, greedy_decode, pad_to_stride
from digitrec.training.checkpoint import load_checkpoint, save_checkpoint

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _batches(split: Split, batch_size: int, seed: int, style: LineStyle) -> Iterator[Batch]:
    """An endless stream of batches of synthetic lines, each batch with one digit count (little padding)."""
    pool, labels = glyphs(split)
    gen = torch.Generator().manual_seed(seed)
    while True:
        count = int(torch.randint(style.min_digits, style.max_digits + 1, (), generator=gen))
        x, widths, targets, lengths = make_lines(pool, labels, batch_size, gen,
                                                 replace(style, min_digits=count, max_digits=count))
        yield pad_to_stride(x), widths, targets, lengths


def ctc_loss(logp: torch.Tensor, widths: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """CTC loss of LineNet's output [B, 11, T] for lines `widths` px wide (padded by `pad_to_stride`), mean over
    the batch."""
    used = frame_count(widths).clamp(max=logp.shape[-1])
    return F.ctc_loss(logp.permute(2, 0, 1), targets, used, lengths, blank=0, zero_infinity=True)


@torch.no_grad()
def line_accuracy(model: LineNet, batches: list[Batch]) -> float:
    """Share of lines read exactly right by greedy decoding."""
    model.eval()
    right = total = 0
    for x, widths, targets, lengths in batches:
        reads = greedy_decode(model(pad_to_stride(x)), frame_count(widths))
        truth = torch.split(targets - 1, lengths.tolist())
        for read, t in zip(reads, truth):
            right += [d for d, _, _ in read] == t.tolist()
            total += 1
    model.train()
    return right / max(total, 1)


def train_lines(
    train: Split, val: Split, out: Path, *, steps: int = 3500, batch_size: int = 64, lr: float = 3e-3,
    seed: int = 0, log: Callable[[str], Any] = print, style: LineStyle = LineStyle(), every: int = 500,
    val_style: LineStyle = LineStyle(min_digits=3), init: Path | None = None,
) -> dict[str, Any]:
    """Train LineNet for `steps` batches of `style` lines; every `every` steps and at the end, measure it on
    512 `val_style` lines of validation digits and save `out/lines.pt` (model, its options and figures).
    `init` starts from the weights of an earlier line reader checkpoint (to train it further)."""
    torch.manual_seed(seed)
    model = LineNet()
    if init is not None:
        ckpt = load_checkpoint(init)
        if "linenet" not in ckpt:
            raise DigitrecError(f"--init {init}: not a LineNet checkpoint (made by `digitrec train-lines`)")
        if ckpt["linenet"].get("members"):
            raise DigitrecError(f"--init {init}: a mixture of line readers; start from one of its members "
                                "(their paths are in its `linenet` facts)")
        model = LineNet(**ckpt["linenet"]["args"])
        model.load_state_dict(ckpt["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    vpool, vlabels = glyphs(val)
    vgen = torch.Generator().manual_seed(seed + 1)
    val_batches = [make_lines(vpool, vlabels, 64, vgen, val_style) for _ in range(8)]
    start, smooth, figures = time.perf_counter(), math.nan, {}
    for step, (x, widths, targets, lengths) in enumerate(_batches(train, batch_size, seed, style), 1):
        loss = ctc_loss(model(x), widths, targets, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        smooth = loss.item() if math.isnan(smooth) else 0.98 * smooth + 0.02 * loss.item()
        if step % every == 0 or step == steps:
            acc = line_accuracy(model, val_batches)
            figures = {"step": step, "loss": round(smooth, 4), "val_line_accuracy": acc,
                       "minutes": round((time.perf_counter() - start) / 60, 2)}
            log(f"step {step}/{steps}  loss {smooth:.4f}  validation lines read exactly {acc:.2%}  "
                f"{figures['minutes']:.2f} min")
            save_checkpoint({"model": model.state_dict(), "linenet": {"args": model.args, "figures": figures}},
                            out / "lines.pt")
        if step >= steps:
            break
    return figures
