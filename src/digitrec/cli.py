"""The `digitrec` command: parses arguments and calls one function per verb, nothing more."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from digitrec.errors import DigitrecError
from digitrec.read import DEFAULT_THRESHOLD


def _eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _out(msg: str) -> None:
    print(msg, flush=True)


# ---- data ------------------------------------------------------------------------------------
def cmd_data_fetch(args: argparse.Namespace) -> int:
    from digitrec.data.fetch import fetch_mnist

    path = fetch_mnist(args.data_dir or None, log=_out)
    _out(f"MNIST is ready in {path}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from digitrec.data.mnist import data_info

    info = data_info(args.data_dir or None)
    if args.json:
        _out(json.dumps(info))
        return 0
    _out(yaml.safe_dump(info, sort_keys=False).rstrip())
    return 0


# ---- models ----------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from digitrec.models import list_models

    rows = list_models()
    if args.json:
        _out(json.dumps(rows))
        return 0
    _out(f"{'name':<15}{'params':>11}{'size KB':>10}  description")
    for r in rows:
        _out(f"{r['name']:<15}{r['params']:>11,}{r['size_kb']:>10.1f}  {r['description']}")
    return 0


# ---- train -----------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from digitrec.config import build_config, load_yaml
    from digitrec.training.distributed import launch, world_from_env
    from digitrec.training.loop import train

    flags = _config_flags(args)
    layers: list[dict[str, Any]] = []
    resume = None
    recipe = args.recipe
    if args.resume is not None:
        resume = _resume_path(args, flags)
        from digitrec.training.checkpoint import load_checkpoint

        saved = load_checkpoint(resume).get("config", {})
        layers.append(saved)
        recipe = "default"
    if args.config:
        layers.append(load_yaml(args.config))
    layers.append(flags)
    cfg = build_config(recipe, *layers, source=args.config or "command line")
    if args.nproc:  # the settings were checked here, once, before torchrun starts a process per rank
        return launch(args.nproc, _without_nproc(args.argv))
    summary = train(cfg, resume=resume, overwrite=args.overwrite, log=_out)
    if not world_from_env().is_main:
        return 0
    _out(f"best validation accuracy {100 * summary['best_val_acc']:.2f}% at epoch {summary['best_epoch']}; "
         f"training took {summary['train_time']:.1f}s")
    if cfg.eval_test:
        from digitrec.evaluation import evaluate_checkpoint

        m = evaluate_checkpoint(summary["best_checkpoint"], split="test", data_dir=cfg.data_dir or None,
                                device=cfg.device, log=_out)
        _out(f"test accuracy {100 * m['accuracy']:.2f}% (n={m['n']}); report in {summary['run_dir']}")
    return 0


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """The command line again, minus --nproc N / --nproc=N, for the processes torchrun starts."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _resume_path(args: argparse.Namespace, flags: dict[str, Any]) -> str:
    if args.resume:
        return args.resume
    if "name" not in flags:
        raise DigitrecError("--resume needs a checkpoint path, or --name of the run to continue")
    from pathlib import Path

    return str(Path(flags.get("runs_dir", "runs")) / flags["name"] / "last.pt")


def _config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Only the settings given on the command line, as a nested dict (so they override the rest)."""
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg__"):
            out[key[5:]] = value
        elif key.startswith("aug__"):
            out.setdefault("augment", {})[key[5:]] = value
    if getattr(args, "model_arg", None):
        out["model_args"] = dict(_parse_model_arg(a) for a in args.model_arg)
    return out


def _parse_model_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise DigitrecError(f"--model-arg {text!r}: expected KEY=VALUE, e.g. --model-arg attention=true")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        return key, value


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig setting (and --aug-* per augmentation setting), defaults suppressed."""
    from digitrec.config import TrainConfig
    from digitrec.data.augment import AugmentConfig

    group = p.add_argument_group("training settings (override the recipe and --config)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("augment", "model_args"):
            continue
        _add_flag(group, f"--{f.name.replace('_', '-')}", f"cfg__{f.name}", f, f.metadata.get("help", ""))
    group.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="a model option; repeatable")
    aug = p.add_argument_group("augmentation (each 0 = off)")
    for f in dataclasses.fields(AugmentConfig):
        flag = "--augment" if f.name == "enabled" else f"--aug-{f.name.replace('_', '-')}"
        _add_flag(aug, flag, f"aug__{f.name}", f, _AUG_HELP.get(f.name, ""))


_AUG_HELP = {
    "enabled": "augment training images",
    "rotate": "max rotation in degrees",
    "scale": "scale drawn from [1-s, 1+s]",
    "translate": "max shift as a fraction of the image size",
    "shear": "max shear in degrees",
    "elastic": "elastic displacement amplitude in pixels",
    "elastic_sigma": "smoothness of the elastic field in pixels",
    "elastic_p": "probability of an elastic deformation",
    "contrast": "contrast factor drawn from [1-c, 1+c]",
    "brightness": "brightness shift drawn from [-b, b]",
    "thickness_p": "probability of thinner or thicker strokes",
    "blur_p": "probability of a Gaussian blur",
    "blur_sigma": "max blur sigma in pixels",
    "erase_p": "probability of erasing a random rectangle",
    "erase_area": "erased fraction of the image, min and max",
    "pen_p": "probability of redrawing the strokes with a round pen of one width, as a drawing canvas does",
    "pen_width": "that pen's width in pixels, min and max",
    "edge_p": "probability of a pen's hard stroke edge: the ink cut at a level (low: bolder, high: thinner)",
    "edge_level": "that level, min and max",
}


def _add_flag(group, flag: str, dest: str, f: dataclasses.Field, help: str) -> None:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    shown = f" (default: {default})" if default != "" else ""
    text = (help + shown).replace("%", "%%")
    meta = f.name.upper()
    if isinstance(default, bool):
        group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
    elif isinstance(default, list):
        group.add_argument(flag, dest=dest, nargs="+", default=argparse.SUPPRESS, help=text, metavar="PATH")
    elif isinstance(default, tuple):
        group.add_argument(flag, dest=dest, type=float, nargs=len(default), default=argparse.SUPPRESS, help=text,
                           metavar=("LO", "HI"))
    else:
        group.add_argument(flag, dest=dest, type=type(default), default=argparse.SUPPRESS, help=text, metavar=meta)


# ---- eval ------------------------------------------------------------------------------------
def cmd_train_lines(args: argparse.Namespace) -> int:
    from pathlib import Path

    from digitrec.data.lines import LineStyle
    from digitrec.data.mnist import load_splits
    from digitrec.read.lines import export_onnx
    from digitrec.training.lines import train_lines

    if args.steps < 1 or args.batch_size < 1 or not 0 < args.lr < math.inf:
        raise DigitrecError("--steps, --batch-size and --lr must be positive (and --lr finite)")
    if not 0 <= args.loose_p <= 1:
        raise DigitrecError(f"--loose-p {args.loose_p}: expected a share of the lines from 0 to 1")
    _folder(args.out, "--out")
    splits = load_splits(args.data_dir or None, log=_out)
    figures = train_lines(splits["train"], splits["val"], Path(args.out), steps=args.steps,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, log=_out,
                          init=Path(args.init) if args.init else None, style=LineStyle(loose_p=args.loose_p))
    onnx = export_onnx(Path(args.out) / "lines.pt", Path(args.out) / "lines.onnx")
    _out(f"line reader saved to {Path(args.out) / 'lines.pt'} and {onnx}: {figures['val_line_accuracy']:.2%} of "
         "validation lines read exactly")
    return 0


def cmd_train_gate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from digitrec.data.fonts import resolve_fonts
    from digitrec.data.mnist import load_splits
    from digitrec.read.gate import export_onnx
    from digitrec.training.gate import DEFAULT_FONTS, train_gate

    if not 0 < args.lr < math.inf:
        raise DigitrecError(f"--lr {args.lr}: expected a finite number > 0")
    _folder(args.out, "--out")
    fonts = resolve_fonts(args.fonts or DEFAULT_FONTS)
    splits = load_splits(args.data_dir or None, log=_out)
    figures = train_gate(splits["train"], splits["val"], Path(args.out), fonts, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed, variants=args.variants,
                         members=args.members, log=_out)
    onnx = export_onnx(Path(args.out) / "gate.pt", Path(args.out) / "gate.onnx")
    _out(f"letter gate saved to {Path(args.out) / 'gate.pt'} and {onnx}: threshold {figures['threshold']:.4f} "
         "turns away "
         f"{figures['val_digits_turned_away']:.2%} of validation digits, "
         f"{figures['held_out_letters_turned_away']:.2%} of held-out fonts' letters and signs and "
         f"{figures['held_out_font_digits_turned_away']:.2%} of their digits")
    return 0


def _folder(path: str, flag: str) -> None:
    """Refuse, before any work is done, a folder argument that names a file or lies under one."""
    from digitrec.files import file_in_the_way

    blocker = file_in_the_way(path)
    if blocker is not None:
        raise DigitrecError(f"{flag} {path}: {blocker} is a file, not a folder")


def cmd_eval(args: argparse.Namespace) -> int:
    from digitrec.evaluation import evaluate_checkpoint

    log = _eprint if args.json else _out
    if (args.checkpoint is None) == (args.model is None):
        raise DigitrecError("eval needs a CHECKPOINT or --model NAME (one of them, not both)")
    from digitrec.config import valid_device

    if not valid_device(args.device):
        raise DigitrecError(f"--device {args.device!r}: expected auto, cpu, cuda or cuda:N")
    if args.out:
        _folder(args.out, "--out")
    paths, out = args.checkpoint, args.out
    if args.model is not None:
        from pathlib import Path

        from digitrec.read.recognizer import resolve_model

        paths = resolve_model(args.model)
        out = out or str(Path("runs") / f"eval-{Path(args.model).stem}")  # never write into the installed package
    m = evaluate_checkpoint(paths, split=args.split, data_dir=args.data_dir or None, out_dir=out,
                            device=args.device, pictures=not args.no_pictures, log=log)
    if args.json:
        _out(json.dumps(m))
        return 0
    _out(f"{m['model']} on {m['split']}: accuracy {100 * m['accuracy']:.2f}%  loss {m['loss']:.4f}  n={m['n']}  "
         f"{m['images_per_s']:.0f} img/s on {m['device']}")
    _out("class  precision  recall     f1  support")
    for row in m["per_class"]:
        _out(f"{row['class']:>5}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:.4f}  {row['support']:7d}")
    _out("report: " + ", ".join(m["files"].values()))
    return 0


# ---- predict ---------------------------------------------------------------------------------
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
EXPLAINED = ".explain.png"  # what --explain writes beside each input


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Files as given, the images inside folders (sorted), and glob matches; unmatched names and folders without
    images stay to be reported. Folders and globs skip the pictures `--explain` wrote, so a second run does not
    read its own explanations."""
    import glob
    from pathlib import Path

    out: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            out += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                          and not p.name.endswith(EXPLAINED)) or [pattern]
        elif not path.exists() and glob.has_magic(pattern):
            out += sorted(p for p in glob.glob(pattern, recursive=True) if not p.endswith(EXPLAINED)) or [pattern]
        else:
            out.append(pattern)
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    from digitrec.read.recognizer import Recognizer

    recognizer = Recognizer.load(args.model, threshold=args.threshold,
                                 lines=None if args.lines == "none" else args.lines,
                                 gate=None if args.gate == "none" else args.gate)
    failed = 0
    for path in expand_inputs(args.paths):
        try:
            if os.path.isdir(path):
                raise DigitrecError(f"{path}: a folder with no image files "
                                    f"({', '.join(sorted(s[1:] for s in IMAGE_SUFFIXES))})")
            result = recognizer.read(path, single=args.single)
            if args.explain:
                from digitrec.read.explain import explain_image

                explain_image(path, result, result.crops, _explain_path(path))
        except DigitrecError as e:
            failed += 1
            _out(json.dumps({"path": path, "error": str(e)}) if args.json else f"{path}: error: {e}")
            continue
        if args.json:
            _out(json.dumps({"path": path, **result.to_dict()}))
        else:
            shown = result.digits.replace("\n", " ") or f"- ({result.reason})"  # rows of writing, one line
            _out(f"{path}: {shown}  confidence {result.confidence:.3f}")
    return 1 if failed else 0


def _explain_path(path: str) -> str:
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(p.stem + EXPLAINED))


# ---- serve -----------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from digitrec.serve import ServeSettings, serve

    if args.workers < 1 or not 0 < args.max_body_mb or (args.max_pixels is not None and args.max_pixels < 1):
        raise DigitrecError("--workers, --max-body-mb and --max-pixels must be positive")
    if not 0 <= args.port <= 65535:
        raise DigitrecError(f"--port {args.port}: expected a port number from 0 to 65535")
    limits = {"max_pixels": args.max_pixels} if args.max_pixels is not None else {}
    settings = ServeSettings(model=args.model, backend=args.backend, threshold=args.threshold,
                             max_body_bytes=int(args.max_body_mb * 1024 * 1024), **limits,
                             api_key=args.api_key or os.environ.get("DIGITREC_API_KEY") or None)
    serve(settings, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)
    return 0


# ---- export and bench ------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from digitrec.exporter import export

    log = _eprint if args.json else _out
    path = export(args.model, format=args.format, out=args.out, opset=args.opset, data_dir=args.data_dir or None,
                  parity_images=args.parity_images, log=log)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    if args.json:
        _out(json.dumps({k: v for k, v in meta.items() if k != "card"}))
        return 0
    par = meta["parity"]
    _out(f"{path}: {meta['format']}, {meta['size_bytes'] / 1024:.1f} KB"
         + (f", opset {meta['opset']}" if meta["opset"] else ""))
    _out(f"parity on {par['images']} test images: {par['disagreements']} different predictions, max logit "
         f"difference {par['max_abs_logit_diff']:.1e}, accuracy {100 * par['accuracy_export']:.2f}% "
         f"(source {100 * par['accuracy_source']:.2f}%)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from digitrec.bench import bench, format_table

    backends = [b for b in args.backend.split(",") if b] if args.backend else None
    try:
        batches = [int(b) for b in args.batch.split(",") if b]
    except ValueError:
        raise DigitrecError(f"--batch {args.batch!r}: expected comma-separated sizes, e.g. 1,32,256") from None
    if args.test_images is not None and args.test_images < 1:
        raise DigitrecError(f"--test-images {args.test_images}: expected an integer >= 1")
    from pathlib import Path

    if Path(args.out).is_dir():
        raise DigitrecError(f"--out {args.out}: a folder; expected the path of the JSON file to write")
    _folder(str(Path(args.out).parent), "--out")
    result = bench(args.model, backends, batches, data_dir=args.data_dir or None, repeats=args.repeats,
                   images_per_round=args.images_per_round, test_images=args.test_images, out=args.out, log=_eprint)
    _out(format_table(result))
    _out(f"results: {args.out}")
    return 0


# ---- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every verb."""
    from digitrec import __version__
    from digitrec.config import RECIPES

    p = argparse.ArgumentParser(prog="digitrec", description="Handwritten-digit recognition on PyTorch.")
    p.add_argument("--version", action="version", version=f"digitrec {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    data = sub.add_parser("data", help="fetch MNIST or show what is cached")
    dsub = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    fetch = dsub.add_parser("fetch", help="download and verify the four MNIST files")
    info = dsub.add_parser("info", help="where MNIST is, whether it verifies, split sizes and class counts")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    for q in (fetch, info):
        q.add_argument("--data-dir", default="", help="folder for the MNIST files (default: $DIGITREC_DATA or cache)")
    fetch.set_defaults(func=cmd_data_fetch)
    info.set_defaults(func=cmd_data_info)

    models = sub.add_parser("models", help="list the registered models with parameter counts and sizes")
    models.add_argument("--json", action="store_true", help="print one JSON array")
    models.set_defaults(func=cmd_models)

    tr = sub.add_parser("train", help="train a model (settings: defaults < --recipe < --config < flags)")
    tr.add_argument("--config", help="YAML file of settings")
    tr.add_argument("--recipe", default="default", choices=list(RECIPES), help="named starting settings")
    tr.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                    help="continue from a checkpoint (alone: RUNS_DIR/NAME/last.pt)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    tr.add_argument("--nproc", type=int, default=0, metavar="N",
                    help="train data-parallel in N processes on this machine (launches torchrun; "
                         "for several machines run torchrun yourself, see the README)")
    _add_config_flags(tr)
    tr.set_defaults(func=cmd_train)

    tl = sub.add_parser("train-lines", help="train the line reader that counts the digits of a line (CTC)")
    tl.add_argument("--steps", type=int, default=3500, help="batches to train on (default: 3500)")
    tl.add_argument("--batch-size", type=int, default=64, help="lines per batch (default: 64)")
    tl.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    tl.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    tl.add_argument("--out", default="runs/lines",
                    help="folder for lines.pt and its ONNX export lines.onnx (default: runs/lines)")
    tl.add_argument("--init", default=None, metavar="CHECKPOINT", help="start from this line reader's weights")
    tl.add_argument("--loose-p", type=float, default=0.0, metavar="P",
                    help="share of lines written loosely: digits of uneven size, jittered and drifting off the "
                         "line (default: 0)")
    tl.add_argument("--data-dir", default="", help="folder with the MNIST files")
    tl.set_defaults(func=cmd_train_lines)

    tg = sub.add_parser("train-gate", help="train the letter gate that turns letters and signs away")
    tg.add_argument("--steps", type=int, default=2000, help="batches to train on (default: 2000)")
    tg.add_argument("--batch-size", type=int, default=256, help="images per batch, half of them digits (default: 256)")
    tg.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule")
    tg.add_argument("--variants", type=int, default=8, help="renderings of each character per font (default: 8)")
    tg.add_argument("--fonts", nargs="+", default=None, metavar="PATH",
                    help="font files, folders or globs to draw digits, letters and signs from (every 5th held out; "
                         "default: the shipped model's training fonts but DejaVu)")
    tg.add_argument("--members", type=int, default=1,
                    help="networks to train (seeds SEED, SEED+1, ...) and read as one, their log-probabilities "
                         "averaged (default: 1; the shipped gate 3)")
    tg.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    tg.add_argument("--out", default="runs/gate",
                    help="folder for gate.pt and its ONNX export gate.onnx (default: runs/gate)")
    tg.add_argument("--data-dir", default="", help="folder with the MNIST files")
    tg.set_defaults(func=cmd_train_gate)

    ev = sub.add_parser("eval", help="evaluate a checkpoint; writes metrics.json and PNGs beside it")
    ev.add_argument("checkpoint", nargs="?", help="a .pt checkpoint written by `digitrec train`")
    ev.add_argument("--model", default=None,
                    help="a shipped model instead of a checkpoint: default or default-ensemble "
                         "(report in runs/eval-NAME)")
    ev.add_argument("--split", default="test", choices=["test", "val"], help="which split (default: test)")
    ev.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    ev.add_argument("--data-dir", default="", help="folder with the MNIST files")
    ev.add_argument("--out", default=None, help="folder for the report (default: the checkpoint's folder)")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ev.add_argument("--no-pictures", action="store_true", help="write metrics JSON only")
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="read the digits in photos, scans or canvas exports")
    pr.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of images, or glob patterns")
    pr.add_argument("--model", default="default",
                    help="default, default-ensemble, or a checkpoint path (default: default)")
    pr.add_argument("--json", action="store_true", help="one JSON object per input, one per line")
    pr.add_argument("--single", action="store_true", help="treat each image as exactly one digit")
    pr.add_argument("--lines", default="default", metavar="default|none|PATH",
                    help="the line reader that counts and co-reads a line's digits: the shipped one (default), "
                         "a `digitrec train-lines` checkpoint, or none (segmentation and classifier alone)")
    pr.add_argument("--gate", default="default", metavar="default|none|PATH",
                    help="the letter gate that turns a lone letter or sign away: the shipped one (default), "
                         "a `digitrec train-gate` checkpoint or its .onnx export, or none (every piece is read as "
                         "a digit)")
    pr.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help=f"abstain (empty digits, with a reason) below this confidence (default: {DEFAULT_THRESHOLD})")
    pr.add_argument("--explain", action="store_true",
                    help="write NAME.explain.png beside each input: boxes, the 28x28 crops, the answer")
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="HTTP API and drawing page (FastAPI on uvicorn)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    sv.add_argument("--model", default="default", help="default, default-ensemble, or a checkpoint path")
    sv.add_argument("--backend", default="auto",
                    help="inference backend: torch, onnx, onnx-int8, pt2, torchscript, or auto (default): the "
                         "shipped int8 export for a built-in model, onnx for a checkpoint")
    sv.add_argument("--workers", type=int, default=1, help="worker processes, each with its own model (default: 1)")
    sv.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help=f"default abstain threshold (default: {DEFAULT_THRESHOLD})")
    sv.add_argument("--max-body-mb", type=float, default=10.0, help="largest request body in MiB (default: 10)")
    sv.add_argument("--max-pixels", type=int, default=None,
                    help="largest image in pixels, checked before decoding (default: 40000000)")
    sv.add_argument("--api-key", default=None, help="require this key on /v1/* (default: $DIGITREC_API_KEY)")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                    help="server log level (default: info)")
    sv.set_defaults(func=cmd_serve)

    ex = sub.add_parser("export", help="export a model to ONNX, ONNX int8, .pt2 or TorchScript, checked for parity")
    ex.add_argument("model", metavar="MODEL", help="a checkpoint, default or default-ensemble")
    ex.add_argument("--format", required=True, choices=["onnx", "onnx-int8", "pt2", "torchscript"],
                    help="onnx; onnx-int8 (static int8, ONNX Runtime); pt2 (torch.export, the lasting PyTorch "
                         "format); torchscript (deprecated in PyTorch, for users who still need it)")
    ex.add_argument("--out", default=None, help="output file (default: beside the checkpoint, or in this folder)")
    ex.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    ex.add_argument("--parity-images", type=int, default=10_000,
                    help="MNIST test images the export is checked on (default: 10000, all)")
    ex.add_argument("--data-dir", default="", help="folder with the MNIST files")
    ex.add_argument("--json", action="store_true", help="print the sidecar facts as one JSON object")
    ex.set_defaults(func=cmd_export)

    be = sub.add_parser("bench", help="throughput and latency of each inference backend on the MNIST test set")
    be.add_argument("--model", default="default", help="a checkpoint, default, default-ensemble or an exported file")
    be.add_argument("--backend", default="",
                    help="comma-separated: torch,pt2,torchscript,onnx,onnx-int8 (default: all for a checkpoint)")
    be.add_argument("--batch", default="1,32,256", help="comma-separated batch sizes (default: 1,32,256)")
    be.add_argument("--repeats", type=int, default=5, help="timed rounds per backend and batch (default: 5)")
    be.add_argument("--images-per-round", type=int, default=2048,
                    help="images each backend runs per timed round (default: 2048)")
    be.add_argument("--test-images", type=int, default=None, help="use the first N test images (default: all)")
    be.add_argument("--out", default="bench.json", help="JSON results file (default: bench.json)")
    be.add_argument("--data-dir", default="", help="folder with the MNIST files")
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a verb; a DigitrecError becomes one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except DigitrecError as e:
        _eprint(f"digitrec: error: {e}")
        return 2
    except KeyboardInterrupt:
        _eprint("digitrec: interrupted")
        return 130
