"""Training the letter gate: a small network that tells a digit from a letter or a sign.

A digit classifier has ten outputs and no 'none of these': shown an A, a K or a #, it names a digit, often
with confidence. The gate is a DigitNet with two outputs (digit, not a digit) trained on MNIST training digits,
pairs of them (the reader asks the gate about all the ink of a reading of up to four pieces, framed as one) and font
digits against letters and signs rendered from the same fonts (`LETTERS`: the ones no digit is
written like, so no O, I, l, S, Z, B, G, b, g or q). Every fifth font is held out of training, to measure
the gate on fonts it never saw. Its threshold is set on validation digits, so that `REJECT_RATE` of them
would be turned away; the MNIST test set is never touched.

Both classes are drawn with `clutter` (shrunk, with ruled lines, a grid or a box through them) as pieces cut
from forms look, so a ruled line left in a crop does not by itself read as 'a letter'.

`members` > 1 trains that many gates from consecutive seeds and reads them as one (`GeometricEnsemble`: their
mean logit): letters one member lets through and digits it turns away are rarely the others', so at the same
share of validation digits the ensemble turns away more letters and fewer of the reader's own digit crops.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from digitrec.data.augment import Augment, AugmentConfig
from digitrec.data.fonts import render_font_digits, render_font_glyphs
from digitrec.data.mnist import Split
from digitrec.data.negatives import touching_pairs
from digitrec.errors import DigitrecError
from digitrec.models.digitnet import DigitNet
from digitrec.models.ensemble import GeometricEnsemble
from digitrec.training.checkpoint import save_checkpoint

LETTERS = "ACEFHJKLMNPQRTUVWXYacdefhkmnprtuvwxy#%@*="
WIDTHS = (16, 32, 64)
REJECT_RATE = 0.0005  # the share of validation digits the threshold is allowed to turn away
HOLD_OUT = 5  # every HOLD_OUT-th font (from the 5th) is kept out of training, to measure the gate on
FONT_DIGITS = 0.2  # of the digits in a batch, the share drawn from fonts rather than MNIST...
PAIRS = 0.25  # ...and the share that are two MNIST digits side by side (touching, overlapping or apart), framed
PAIR_OVERLAP = (-0.3, 0.25)  # the right digit moved left by this share of the height (negative: a gap)
CLUTTER_P = 0.5  # chance that an image of either class is cluttered (see `clutter`)
# The shipped model's training fonts (configs/shipped.yaml) but DejaVu, whose letters the evaluation sets use.
DEFAULT_FONTS = tuple(f"/usr/share/fonts/{p}" for p in (
    "opentype/bwht", "opentype/comic-neue", "opentype/dancingscript", "opentype/havana", "opentype/lobster",
    "opentype/urw-base35/Z003-MediumItalic.otf", "truetype/andika", "truetype/breip", "truetype/ecolier-court",
    "truetype/femkeklaver", "truetype/fifthhorseman", "truetype/freefont", "truetype/gnutypewriter",
    "truetype/kiloji", "truetype/leckerli-one", "truetype/liberation", "truetype/yusei-magic"))
AUGMENT = AugmentConfig(rotate=10.0, scale=0.1, translate=0.08, shear=10.0, contrast=0.3, thickness_p=0.2,
                        blur_p=0.1, erase_p=0.0)


def split_fonts(fonts: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The fonts to train on and the fonts held out (every `HOLD_OUT`-th), in a fixed order."""
    train = [f for i, f in enumerate(fonts) if i % HOLD_OUT != HOLD_OUT - 1]
    held = [f for i, f in enumerate(fonts) if i % HOLD_OUT == HOLD_OUT - 1]
    return train, held


def clutter(x: torch.Tensor, gen: torch.Generator, p: float = CLUTTER_P) -> torch.Tensor:
    """A copy of `x` ([B, 1, 28, 28] in [0, 1]) in which a `p` share of the images is shrunk (1 to 3.5 times,
    placed anywhere in the frame) and crossed by two ruled lines, a grid or a box; `x` itself when none is
    picked. This is what a piece of a form looks like once framed: the rule's remnant widens the ink's box,
    so the glyph is small beside it."""
    b = x.shape[0]
    picked = torch.rand(b, generator=gen) < p
    n = int(picked.sum())
    if n == 0:
        return x
    zoom = 1 + 2.5 * torch.rand(n, generator=gen)
    room = (1 - 1 / zoom).clamp(min=0)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * room[:, None]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = zoom
    theta[:, :, 2] = -shift * zoom[:, None]
    grid = F.affine_grid(theta, [n, 1, 28, 28], align_corners=False)
    small = F.grid_sample(x[picked], grid, align_corners=False, padding_mode="zeros")
    kind = torch.randint(0, 3, (n,), generator=gen)  # 0 ruled lines, 1 grid, 2 box
    top, bottom = torch.randint(0, 12, (n,), generator=gen), torch.randint(16, 28, (n,), generator=gen)
    left, right = torch.randint(0, 12, (n,), generator=gen), torch.randint(16, 28, (n,), generator=gen)
    level = 0.5 + 0.5 * torch.rand(n, generator=gen)
    lines = torch.zeros(n, 28, 28)
    idx = torch.arange(n)
    lines[idx, top, :] = lines[idx, bottom, :] = 1
    upright = kind > 0
    lines[idx[upright], :, left[upright]] = 1
    lines[idx[upright], :, right[upright]] = 1
    pos = torch.arange(28)[None, :]
    rows_out = (pos < top[:, None]) | (pos > bottom[:, None])
    cols_out = (pos < left[:, None]) | (pos > right[:, None])
    lines[(kind == 2)[:, None, None] & (rows_out[:, :, None] | cols_out[:, None, :])] = 0  # a box ends at its corners
    out = x.clone()
    out[picked] = torch.maximum(small, (lines * level[:, None, None])[:, None])
    return out


def gate_scores(model: torch.nn.Module, images: np.ndarray | torch.Tensor, batch: int = 1024) -> np.ndarray:
    """The gate's 'not a digit' probability for each image ([N, 28, 28], uint8 0-255 or float in [0, 1])."""
    x = torch.as_tensor(images)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    model.eval()
    out = []
    with torch.inference_mode():
        for part in x.reshape(-1, 1, 28, 28).split(batch):
            out.append(model(part).softmax(1)[:, 1])
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def gate_network(args: dict[str, Any]) -> torch.nn.Module:
    """The gate network a checkpoint's `args` describe: one DigitNet, or `members` of them read as one
    (`GeometricEnsemble`)."""
    nets = [DigitNet(widths=args["widths"], classes=args["classes"]) for _ in range(int(args.get("members", 1)))]
    return nets[0] if len(nets) == 1 else GeometricEnsemble(nets)


def train_gate(
    train: Split, val: Split, out: Path, fonts: Sequence[Path], *, steps: int = 2000, batch_size: int = 256,
    lr: float = 0.1, seed: int = 0, variants: int = 8, members: int = 1, log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Train the gate (`members` networks, seeds seed, seed+1, ..., each for `steps` batches of half digits, half
    letters and signs, their log-probabilities averaged), set its threshold on validation digits, measure it on
    the held-out fonts, and save `out/gate.pt`; returns its figures. Member k is the gate `--seed seed+k` trains
    alone; averaged, the members' mistakes, which differ, mostly cancel."""
    if steps < 1 or batch_size < 4 or not 0 < lr < math.inf or variants < 1 or members < 1:
        raise DigitrecError("train-gate: --steps, --variants, --members and --lr must be positive (--lr finite) and "
                            "the batch at least 4")
    fit_fonts, held_fonts = split_fonts(fonts)
    if not fit_fonts or not held_fonts:
        raise DigitrecError(f"train-gate: needs at least {HOLD_OUT} font files (every {HOLD_OUT}th is held out "
                            f"to measure the gate), got {len(fonts)}")
    start = time.perf_counter()
    nets, losses = [], []
    for k in range(members):
        tag = "gate" if members == 1 else f"gate {k + 1}/{members}"
        net, loss = _train_member(train, fit_fonts, len(held_fonts), steps=steps, batch_size=batch_size, lr=lr,
                                  seed=seed + k, variants=variants, log=log, tag=tag, start=start)
        nets.append(net)
        losses.append(loss)
    model = nets[0] if members == 1 else GeometricEnsemble(nets)
    figures = measure(model, val, held_fonts, seed)
    figures.update(steps=steps, members=members, loss=round(float(np.mean(losses)), 4),
                   minutes=round((time.perf_counter() - start) / 60, 2))
    args = {"widths": list(WIDTHS), "classes": 2, **({"members": members} if members > 1 else {})}
    save_checkpoint({"model": model.state_dict(),
                     "gate": {"args": args, "threshold": figures["threshold"], "seed": seed,
                              "letters": LETTERS, "fonts": [f.name for f in fonts], "figures": figures}},
                    out / "gate.pt")
    return figures


def _train_member(
    train: Split, fit_fonts: Sequence[Path], held: int, *, steps: int, batch_size: int, lr: float, seed: int,
    variants: int, log: Callable[[str], Any], tag: str, start: float,
) -> tuple[DigitNet, float]:
    """One gate network trained from `seed` (fonts rendered, weights drawn and batches picked from it) and its
    final smoothed loss."""
    torch.manual_seed(seed)
    font_digits = render_font_digits(fit_fonts, variants, seed, log=log, sketch=0.15).images
    letters, _ = render_font_glyphs(fit_fonts, LETTERS, variants, seed + 1, sketch=0.15)
    log(f"{tag}: {len(train)} MNIST and {len(font_digits)} font digits against {len(letters)} letters and signs "
        f"from {len(fit_fonts)} fonts ({held} held out); rendered at {time.perf_counter() - start:.0f} s")
    model = DigitNet(widths=WIDTHS, classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    augment = Augment(AUGMENT)
    gen = torch.Generator().manual_seed(seed)
    half = batch_size // 2
    n_font, n_pairs = round(half * FONT_DIGITS), round(half * PAIRS)
    labels = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(batch_size - half, dtype=torch.long)])
    smooth = math.nan
    model.train()
    for step in range(1, steps + 1):
        parts = [train.images[torch.randint(len(train), (half - n_font - n_pairs,), generator=gen)],
                 font_digits[torch.randint(len(font_digits), (n_font,), generator=gen)],
                 letters[torch.randint(len(letters), (batch_size - half,), generator=gen)]]
        x = torch.cat(parts).float().div_(255).unsqueeze(1)
        pairs = touching_pairs(x[:half - n_font - n_pairs], n_pairs, gen, overlap=PAIR_OVERLAP)
        x = torch.cat([x[:half - n_font - n_pairs], pairs, x[half - n_font - n_pairs:]])
        x = clutter(augment(x, gen), gen)
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        smooth = loss.item() if math.isnan(smooth) else 0.98 * smooth + 0.02 * loss.item()
        if step % 250 == 0 or step == steps:
            log(f"{tag}: step {step}/{steps}, loss {smooth:.4f}, {time.perf_counter() - start:.0f} s")
    return model.eval(), smooth


def measure(model: torch.nn.Module, val: Split, held_fonts: Sequence[Path], seed: int) -> dict[str, Any]:
    """The threshold (`REJECT_RATE` of validation digits above it) and, at it, the share of pairs of validation
    digits and of held-out fonts' letters and digits turned away."""
    digits = gate_scores(model, val.images)
    threshold = float(np.quantile(digits, 1 - REJECT_RATE))
    pairs = touching_pairs(val.images.float().div(255).unsqueeze(1), 2000, torch.Generator().manual_seed(seed),
                           overlap=PAIR_OVERLAP)
    pair_scores = gate_scores(model, pairs)
    held_letters, _ = render_font_glyphs(held_fonts, LETTERS, 4, seed + 2)
    held_digits = render_font_digits(held_fonts, 4, seed + 3, log=lambda _: None).images
    letter_scores, font_scores = gate_scores(model, held_letters), gate_scores(model, held_digits)
    return {"threshold": round(threshold, 6), "val_digits_turned_away": float((digits > threshold).mean()),
            "val_pairs_turned_away": float((pair_scores > threshold).mean()),
            "held_out_letters_turned_away": float((letter_scores > threshold).mean()),
            "held_out_font_digits_turned_away": float((font_scores > threshold).mean()),
            "n_val_digits": len(digits), "n_held_out_letters": len(letter_scores),
            "n_held_out_font_digits": len(font_scores), "n_val_pairs": len(pair_scores),
            "held_out_fonts": [f.name for f in held_fonts]}
