"""Export a model to ONNX, ONNX int8, torch.export (.pt2) or TorchScript, driven by one table of formats.

Every export embeds the model card where the format allows, reloads the file it wrote, checks it
against the source model on MNIST test images (batches of 1, 2 and 256), and writes FILE.json beside
it with the source, format, opset, input contract, size and parity figures. Files appear atomically:
an export that fails leaves nothing behind.

TorchScript is deprecated in PyTorch; it is kept working for users who still need it, but .pt2
(torch.export) is the lasting PyTorch format and ONNX the one for other runtimes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from digitrec import __version__
from digitrec.card import INPUT_SIZE, INPUT_SPEC, NUM_CLASSES
from digitrec.errors import DigitrecError
from digitrec.files import temp_beside
from digitrec.training.checkpoint import load_checkpoint, model_from_checkpoint, unwrap

INPUT_NAME, OUTPUT_NAME = "image", "logits"
EXAMPLE_BATCH = 8  # traced with a batch > 1 under a named Dim, so the batch size is never specialised
CHECK_BATCHES = (1, 2, 256)
LOGIT_TOL = 1e-4  # fp32 exports: max |logit difference| allowed against the source model
INT8_MAX_DROP = 0.1  # int8: accuracy points it may lose against the source model
CALIB_IMAGES = 512
PARITY_IMAGES = 10_000
MIN_OPSET = 18  # the dynamo exporter's oldest
CARD_ENTRY = "digitrec/card.json"  # the card's name inside .pt2 and TorchScript archives
META_CARD, META_FORMAT, META_INPUT = "digitrec.card", "digitrec.format", "digitrec.input"
Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass
class Loaded:
    """An exported network read back: float32 images [B, 1, 28, 28] in [0, 1] -> logits [B, 10], and its card."""

    run: Callable[[np.ndarray], np.ndarray]
    card: dict
    format: str


@dataclass
class Job:
    """What a writer needs besides the model: the card, the opset asked for, and calibration images."""

    card: dict
    opset: int | None
    calibration: Callable[[], np.ndarray]
    log: Log


@dataclass(frozen=True)
class Format:
    """One export format: default suffix, the writer (returns facts for the sidecar), the loader, options."""

    name: str
    suffix: str
    write: Callable[[nn.Module, Path, Job], dict]
    load: Callable[[Path], Loaded]
    description: str
    opset: bool = False  # takes --opset
    exact: bool = True  # fp32: must match the source to LOGIT_TOL; else gated on accuracy


# ---- ONNX -----------------------------------------------------------------------------------------
def _onnx_proto(model: nn.Module, opset: int | None) -> Any:
    """The ModelProto of `model` by the dynamo exporter, with a named, dynamic batch dimension."""
    import onnxscript  # noqa: F401  (the dynamo exporter needs it; fail here with a clear message)

    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.onnx.export(
            model, (_example(),), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},), opset_version=opset, verbose=False,
        )
    except Exception as e:  # the exporter raises many types; the first line says what went wrong
        at = f" at opset {opset}" if opset else ""
        raise DigitrecError(f"ONNX export{at} failed: {_first_line(e)}") from None
    made = _opset_of(program.model_proto)
    if opset is not None and made != opset:  # the exporter logs its error and falls back to another opset
        raise DigitrecError(f"--opset {opset}: this torch exports ONNX opsets {MIN_OPSET} and up, but not {opset} "
                            f"(it made opset {made}); try --opset {made}")
    return program.model_proto


def _save_onnx(proto: Any, path: Path, fmt: str, job: Job) -> dict:
    """Drop per-node debug metadata (stack traces, local paths), embed the card, save and check."""
    import onnx

    _strip_debug(proto)
    onnx.helper.set_model_props(proto, {META_CARD: json.dumps(job.card), META_FORMAT: fmt,
                                        META_INPUT: json.dumps(INPUT_SPEC)})
    proto.doc_string = f"digitrec {__version__} {fmt} export: float32 {INPUT_NAME} [batch, 1, 28, 28] in [0, 1] " \
                       f"-> {OUTPUT_NAME} [batch, 10]"
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise DigitrecError(f"the {fmt} export did not pass onnx.checker: {_first_line(e)}") from None
    return {"opset": _opset_of(proto)}


def _strip_debug(proto: Any) -> None:
    """Drop the exporter's per-node debug metadata (stack traces naming local paths) and model metadata."""
    for graph_nodes in [proto.graph.node, *(f.node for f in proto.functions)]:
        for node in graph_nodes:
            del node.metadata_props[:]
            node.doc_string = ""
    del proto.metadata_props[:]


def _newest_opset() -> int:
    """The newest opset the installed onnx package knows."""
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


def _opset_of(proto: Any) -> int | None:
    """The default-domain opset an ONNX model was written for."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _write_onnx(model: nn.Module, path: Path, job: Job) -> dict:
    return _save_onnx(_onnx_proto(model, job.opset), path, "onnx", job)


def _write_onnx_int8(model: nn.Module, path: Path, job: Job) -> dict:
    """Static QDQ quantization by ONNX Runtime, per channel, calibrated on preprocessed training images."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = job.calibration()
    with tempfile.TemporaryDirectory(prefix="digitrec-int8-") as tmp:
        fp32, pre, int8 = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(_onnx_proto(model, job.opset), str(fp32))
        quant_pre_process(str(fp32), str(pre))
        # reduce_range: 7-bit weights avoid the u8*s8 saturation of AVX2 kernels (without VNNI), which
        # cost 0.2 accuracy points on the default model; it costs nothing measurable elsewhere.
        quantize_static(
            str(pre), str(int8), _Calibration(images), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        facts = _save_onnx(onnx.load(str(int8)), path, "onnx-int8", job)
    facts["quantization"] = {
        "tool": "onnxruntime quantize_static", "format": "QDQ", "per_channel": True, "reduce_range": True,
        "activations": "uint8", "weights": "int8", "calibration": "minmax",
        "calibration_images": f"{len(images)} MNIST training images (seeded sample), scaled to [0, 1]",
    }
    return facts


class _Calibration:
    """Feeds calibration batches to onnxruntime's quantize_static (its CalibrationDataReader protocol)."""

    def __init__(self, images: np.ndarray, batch: int = 64) -> None:
        self._batches = iter([{INPUT_NAME: images[i : i + batch]} for i in range(0, len(images), batch)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def open_onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for `path`; intra-op threads as torch uses (OMP_NUM_THREADS) unless given.

    Its threads sleep when idle instead of spinning: a read runs the classifier, the line reader and the letter
    gate on a few crops each, between numpy and torch work, and spinning threads took the cores from all of it
    (on 2 cores, a ten-digit line 57 ms against 17-20 ms; batches of 256 lose 5-10 %)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise DigitrecError(f"model {path}: not a readable ONNX model ({_first_line(e)})") from None


def export_network_onnx(
    model: nn.Module, out: str | Path, example: torch.Tensor, dims: dict[int, Any], checks: Sequence[torch.Tensor], *,
    names: tuple[str, str], tol: float, what: str, metadata: dict[str, str] | None = None,
) -> Path:
    """Export a helper network of the reader (the line reader, the letter gate) to ONNX with the input and output
    `names` and the dynamic `dims` of its input; written atomically, with `metadata`, once ONNX Runtime's output
    matches PyTorch's within `tol` on each of `checks`. `what` names the source in errors."""
    import onnx

    model, out = model.eval(), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_LEAFSPEC_DEPRECATED, category=FutureWarning)
                program = torch.onnx.export(model, (example,), dynamo=True, input_names=[names[0]],
                                            output_names=[names[1]], dynamic_shapes=(dims,), verbose=False)
        except Exception as e:  # the exporter raises many types; the first line says what went wrong
            raise DigitrecError(f"ONNX export of {what} failed: {_first_line(e)}") from None
        proto = program.model_proto
        _strip_debug(proto)
        if metadata:
            onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(staged))
        session = open_onnx_session(staged, threads=1)
        for x in checks:
            with torch.inference_mode():
                want = model(x).numpy()
            diff = float(np.abs(session.run(None, {names[0]: x.numpy()})[0] - want).max())
            if diff > tol:
                raise DigitrecError(f"ONNX export of {what} differs from PyTorch by {diff:.2g} > {tol}")
        staged.replace(out)
    return out


def onnx_loaded(session: Any, path: str | Path) -> Loaded:
    """Wrap an ONNX Runtime session as a Loaded network, with the card from its metadata."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise DigitrecError(f"model {path}: expected one input (images [B, 1, 28, 28]), found {len(inputs)}")
    name, meta = inputs[0].name, session.get_modelmeta().custom_metadata_map

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return Loaded(run, _json_or_empty(meta.get(META_CARD)), meta.get(META_FORMAT, "onnx"))


def _load_onnx(path: Path) -> Loaded:
    return onnx_loaded(open_onnx_session(path), path)


# ---- torch.export (.pt2) and TorchScript ----------------------------------------------------------
def _write_pt2(model: nn.Module, path: Path, job: Job) -> dict:
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(model, (_example(),), dynamic_shapes=({0: batch},), strict=False)
    except Exception as e:
        raise DigitrecError(f"torch.export failed: {_first_line(e)}") from None
    with open(path, "wb") as f:  # a file object: torch.export.save insists on names ending in .pt2
        torch.export.save(program, f, extra_files={CARD_ENTRY: json.dumps(job.card)})
    return {}


def _load_pt2(path: Path) -> Loaded:
    if not any(name.endswith("/archive_format") for name in _zip_names(path, "torch.export (.pt2) program")):
        raise DigitrecError(f"model {path}: a zip archive, but not a torch.export (.pt2) program")
    extra = {CARD_ENTRY: ""}
    try:
        with open(path, "rb") as f:
            module = torch.export.load(f, extra_files=extra).module()
    except Exception as e:
        raise DigitrecError(f"model {path}: not a readable torch.export (.pt2) program ({_first_line(e)})") from None
    return Loaded(_torch_runner(module), _json_or_empty(extra[CARD_ENTRY]), "pt2")


_LEAFSPEC_DEPRECATED = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"  # only these warnings are silenced; the docs say it


def _write_torchscript(model: nn.Module, path: Path, job: Job) -> dict:
    job.log("note: TorchScript is deprecated in PyTorch; prefer --format pt2 (torch.export) or onnx")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=DeprecationWarning)
        traced = torch.jit.trace(model, _example(), check_trace=False)  # the parity check below is stricter
        torch.jit.save(traced, str(path), _extra_files={CARD_ENTRY: json.dumps(job.card)})
    return {}


def _load_torchscript(path: Path) -> Loaded:
    if not any("/code/" in name for name in _zip_names(path, "TorchScript file")):
        raise DigitrecError(f"model {path}: a zip archive, but not a TorchScript file (it holds no code/)")
    extra = {CARD_ENTRY: ""}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise DigitrecError(f"model {path}: not a readable TorchScript file ({_first_line(e)})") from None
    return Loaded(_torch_runner(module.eval()), _json_or_empty(extra[CARD_ENTRY]), "torchscript")


def _zip_names(path: Path, what: str) -> list[str]:
    """The entries of a zip archive (.pt2 and TorchScript files are zips), or one clear error."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise DigitrecError(f"model {path}: not a readable {what} (not a zip archive: {_first_line(e)})") from None


def _torch_runner(module: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).float().numpy()

    return run


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", _write_onnx, _load_onnx, "ONNX, float32 (ONNX Runtime and other runtimes)",
                   opset=True),
    "onnx-int8": Format("onnx-int8", ".int8.onnx", _write_onnx_int8, _load_onnx,
                        "ONNX with int8 weights and activations (static QDQ, ONNX Runtime)", opset=True, exact=False),
    "pt2": Format("pt2", ".pt2", _write_pt2, _load_pt2, "torch.export program, the lasting PyTorch format"),
    "torchscript": Format("torchscript", ".torchscript", _write_torchscript, _load_torchscript,
                          "TorchScript (deprecated in PyTorch; for users who still need it)"),
}
SUFFIX_KIND = {".onnx": "onnx", ".pt2": "pt2", ".torchscript": "torchscript", ".ts": "torchscript"}


def load_export(path: str | Path, kind: str, *, session: Any = None) -> Loaded:
    """Read an exported file of `kind` (onnx, pt2, torchscript) and check it maps [2,1,28,28] to [2,10].

    `session` reuses an ONNX Runtime session already open on `path`.
    """
    path = Path(path)
    if not path.is_file():
        raise DigitrecError(f"model {path}: no such file")
    loaded = onnx_loaded(session, path) if session is not None else FORMATS[kind].load(path)
    _probe(loaded, path)
    return loaded


def _probe(loaded: Loaded, path: Path) -> None:
    """One clear error when a readable file is not a digit classifier of the expected shape."""
    want = f"a network from float32 images [B, 1, {INPUT_SIZE}, {INPUT_SIZE}] to logits [B, {NUM_CLASSES}]"
    try:
        out = np.asarray(loaded.run(np.zeros((2, 1, INPUT_SIZE, INPUT_SIZE), np.float32)))
    except Exception as e:
        raise DigitrecError(f"model {path}: expected {want}; it fails on such a batch ({_first_line(e)})") from None
    if out.shape != (2, NUM_CLASSES):
        raise DigitrecError(f"model {path}: expected {want}; it gives shape {list(out.shape)} for a batch of 2")


# ---- the one entry point --------------------------------------------------------------------------
def export(
    model_or_checkpoint: nn.Module | str | Path | Sequence[str | Path],
    format: str = "onnx",
    out: str | Path | None = None,
    opset: int | None = None,
    *,
    data_dir: str | Path | None = None,
    parity_images: int = PARITY_IMAGES,
    max_drop: float | None = INT8_MAX_DROP,
    calibration_images: int = CALIB_IMAGES,
    log: Log = _quiet,
) -> Path:
    """Export a model (module, checkpoint, several checkpoints as an ensemble, or 'default') and check it.

    Writes OUT and OUT.json atomically; raises DigitrecError, leaving no file, when the export does not
    match the source (fp32: every prediction, logits within 1e-4; int8: at most `max_drop` points lost).
    """
    fmt = _format(format)
    if opset is not None and not fmt.opset:
        raise DigitrecError(f"--opset applies to the ONNX formats only, not {fmt.name!r}")
    if opset is not None and not MIN_OPSET <= opset <= _newest_opset():
        raise DigitrecError(f"--opset {opset}: expected an ONNX opset from {MIN_OPSET} to {_newest_opset()}")
    module, card, sources, stem = _source(model_or_checkpoint)
    path = _out_path(out, fmt, stem)
    data = _Mnist(data_dir, log)
    job = Job(card, opset, lambda: data.calibration(calibration_images), log)
    tmp_model = temp_beside(path, path.suffix)
    tmp_json = tmp_model.with_name(tmp_model.name + ".json")  # unique because tmp_model is
    try:
        started = time.perf_counter()
        with warnings.catch_warnings():  # torch.export's own use of a name it deprecates, printed on every export
            warnings.filterwarnings("ignore", message=_LEAFSPEC_DEPRECATED, category=FutureWarning)
            facts = fmt.write(module, tmp_model, job)
        parity = check_parity(module, load_export(tmp_model, _kind(fmt)), *data.test(parity_images))
        _gate(parity, fmt, max_drop)
        meta = _sidecar_facts(fmt, path, tmp_model, sources, card, facts, parity, time.perf_counter() - started)
        tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp_model, path)
        os.replace(tmp_json, _sidecar(path))
    except BaseException:
        tmp_model.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
        raise
    log(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB) and {_sidecar(path).name}")
    return path


def check_parity(
    source: nn.Module, loaded: Loaded, images: np.ndarray, labels: np.ndarray, batch: int = 256
) -> dict[str, Any]:
    """Compare an export with its source on `images`: prediction agreement, max logit gap, both accuracies."""
    with torch.inference_mode():
        ref = np.concatenate([source(torch.from_numpy(images[i : i + batch])).float().numpy()
                              for i in range(0, len(images), batch)])
    got = np.concatenate([loaded.run(images[i : i + batch]) for i in range(0, len(images), batch)])
    # Batches of 1 and 2 as well: a batch dimension fixed at export time fails or differs here.
    small = [np.abs(loaded.run(images[:n]) - ref[:n]).max() for n in CHECK_BATCHES if n < batch and n <= len(images)]
    agree = got.argmax(1) == ref.argmax(1)
    acc_src, acc_exp = float((ref.argmax(1) == labels).mean()), float((got.argmax(1) == labels).mean())
    return {
        "images": int(len(images)), "split": "MNIST test (first N)",
        "batches_checked": [n for n in CHECK_BATCHES if n <= len(images)],
        "agreement": float(agree.mean()), "disagreements": int((~agree).sum()),
        "max_abs_logit_diff": float(max([np.abs(got - ref).max(), *small])),
        "accuracy_source": acc_src, "accuracy_export": acc_exp,
        "accuracy_drop_points": round(100 * (acc_src - acc_exp), 4),
    }


def _gate(parity: dict, fmt: Format, max_drop: float | None) -> None:
    if fmt.exact and (parity["disagreements"] or parity["max_abs_logit_diff"] > LOGIT_TOL):
        raise DigitrecError(
            f"the {fmt.name} export does not match the source model: {parity['disagreements']} different "
            f"predictions, max logit difference {parity['max_abs_logit_diff']:.2e} (allowed {LOGIT_TOL:g})")
    if not fmt.exact and max_drop is not None and parity["accuracy_drop_points"] > max_drop:
        raise DigitrecError(
            f"the {fmt.name} export loses {parity['accuracy_drop_points']:.2f} accuracy points on "
            f"{parity['images']} test images (allowed {max_drop}); the file was not written")


def _sidecar_facts(fmt: Format, path: Path, written: Path, sources: list[str], card: dict, facts: dict,
                   parity: dict, seconds: float) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {"digitrec": __version__, "torch": torch.__version__}
    for dist in ("onnx", "onnxruntime", "onnxscript"):
        if fmt.opset:
            versions[dist] = md.version(dist)
    return {
        "file": path.name, "format": fmt.name, "description": fmt.description,
        "size_bytes": written.stat().st_size, "sha256": _sha256(written),
        "source": sources, "opset": facts.pop("opset", None),
        "input": {**INPUT_SPEC, "name": INPUT_NAME, "shape": ["batch", 1, INPUT_SIZE, INPUT_SIZE]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", NUM_CLASSES], "meaning": "logits (softmax: probabilities)"},
        "parity": parity, **facts, "export_seconds": round(seconds, 2), "versions": versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "card": card,
    }


# ---- helpers --------------------------------------------------------------------------------------
class _Ensemble(nn.Module):
    """Several models as one network: log of the mean probability, so its softmax is the ensemble's average."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([m(x).log_softmax(1) for m in self.members])
        return torch.logsumexp(logp, 0) - float(np.log(len(self.members)))


def _source(model: nn.Module | str | Path | Sequence[str | Path]) -> tuple[nn.Module, dict, list[str], str]:
    """The network to export (eval, float32, CPU), its card, its source files, and the default output stem
    (beside a checkpoint; in the current folder for built-in names, ensembles and modules)."""
    if isinstance(model, nn.Module):
        module = copy.deepcopy(unwrap(model)).float().cpu().eval()
        spec = getattr(module, "digitrec_spec", {})
        card = {"architecture": spec.get("name"), "model_args": spec.get("args", {})}
        return module, card, ["<in-memory module>"], "model"
    if isinstance(model, (str, Path)):
        from digitrec.read.recognizer import BUILTIN, resolve_model  # the shipped weights live with the reader

        paths = resolve_model(model)
        builtin = str(model) in BUILTIN
        stem = str(model) if builtin else str(Path(model).with_suffix(""))
    else:
        paths, stem, builtin = [Path(p) for p in model], "ensemble", False
    if not paths:
        raise DigitrecError("export: no checkpoint given")
    # A shipped model's files are named as the package names them, not by where this machine installed it.
    sources = [p.name if builtin else str(p) for p in paths]
    ckpts = [load_checkpoint(p) for p in paths]
    models = [model_from_checkpoint(c, source=f"checkpoint {p}").float() for c, p in zip(ckpts, paths)]
    cards = [c.get("card", {}) for c in ckpts]
    if len(models) == 1:
        return models[0], cards[0], sources, stem
    return _Ensemble(models).eval(), {"ensemble": cards}, sources, stem


def _out_path(out: str | Path | None, fmt: Format, stem: str) -> Path:
    """OUT as given (its suffix must load as this format), or STEM + the format's suffix."""
    if out is None:
        return Path(f"{stem}{fmt.suffix}")
    path = Path(out)
    if SUFFIX_KIND.get(path.suffix.lower()) != _kind(fmt):
        allowed = [s for s, k in SUFFIX_KIND.items() if k == _kind(fmt)]
        raise DigitrecError(f"--out {out}: {fmt.name} files must end in {' or '.join(allowed)}, "
                            "so that they load with the right runtime")
    if path.is_dir():
        raise DigitrecError(f"--out {out}: is a folder; give a file name")
    return path


def _kind(fmt: Format) -> str:
    """The loader family of a format: both ONNX formats run on ONNX Runtime."""
    return "onnx" if fmt.name.startswith("onnx") else fmt.name


def _format(name: str) -> Format:
    if name not in FORMATS:
        raise DigitrecError(f"unknown export format {name!r} (known: {', '.join(FORMATS)})")
    return FORMATS[name]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class _Mnist:
    """MNIST read once, on first need: the test images for parity and training images for calibration."""

    def __init__(self, data_dir: str | Path | None, log: Log) -> None:
        self.data_dir, self.log, self._splits = data_dir, log, None

    def _split(self, name: str) -> Any:
        if self._splits is None:
            from digitrec.data.mnist import load_mnist

            self._splits = load_mnist(self.data_dir, log=self.log)
        return self._splits[name]

    def test(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n < 1:
            raise DigitrecError(f"parity images {n}: need at least 1")
        split = self._split("test")
        return to_input(split.images[:n]), split.labels[:n].numpy()

    def calibration(self, n: int) -> np.ndarray:
        split = self._split("train")
        pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n]
        return to_input(split.images[pick])


def to_input(images: torch.Tensor) -> np.ndarray:
    """uint8 images [N, 28, 28] -> the network input: float32 [N, 1, 28, 28] in [0, 1], contiguous."""
    return np.ascontiguousarray(images.unsqueeze(1).float().div(255).numpy())


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _example() -> torch.Tensor:
    return torch.rand(EXAMPLE_BATCH, 1, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))


def _json_or_empty(text: str | bytes | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]
