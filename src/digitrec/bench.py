"""`digitrec bench`: throughput and latency of each inference backend on the MNIST test set, accuracy beside.

Method: every backend in one process and one run. A full pass over the test set comes first (warm-up,
and the accuracy figure); then, for each batch size, `repeats` rounds in which every backend in turn
times the same batches (interleaved, so machine load falls on all alike). Throughput is the median
over rounds; latency p50/p99 over every timed call. Times cover the network alone: float32 images in,
logits out, no decoding or segmentation.
"""
from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitrec.errors import DigitrecError
from digitrec.files import atomic_path
from digitrec.exporter import FORMATS, export, to_input, usable_cores
from digitrec.read.backends import BACKENDS, Backend, file_kind, load_backend

DEFAULT_BATCHES = (1, 32, 256)
Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def bench(
    model: str | Path = "default",
    backends: Sequence[str] | None = None,
    batches: Sequence[int] = DEFAULT_BATCHES,
    *,
    data_dir: str | Path | None = None,
    repeats: int = 5,
    images_per_round: int = 2048,
    test_images: int | None = None,
    out: str | Path | None = None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Time `backends` (default: all five for a checkpoint, or the one an exported file runs on) on MNIST test.

    A checkpoint or built-in name is exported to each non-torch backend in a temp folder first.
    Returns the result (rows of backend, batch, images/s, p50/p99 ms, accuracy) and writes it to `out`.
    """
    if repeats < 1 or images_per_round < 1 or not batches or min(batches) < 1:
        raise DigitrecError("bench: repeats, images per round and batch sizes must be positive")
    from digitrec.data.mnist import load_mnist

    test = load_mnist(data_dir, log=log)["test"]
    images, labels = to_input(test.images[:test_images]), test.labels[:test_images].numpy()
    with tempfile.TemporaryDirectory(prefix="digitrec-bench-") as tmp:
        runners = _runners(model, backends, Path(tmp), data_dir, min(1000, len(images)), log)
        log(f"accuracy pass over {len(images)} test images (also the warm-up)")
        base = {row["backend"]: row for row in _accuracy(runners, images, labels)}
        rows = []
        for b in batches:
            log(f"timing batch {b}: {repeats} rounds of {max(1, images_per_round // b)} calls per backend")
            for name, timing in _time_batch(runners, images, b, repeats, images_per_round).items():
                rows.append({**base[name], "batch": b, **timing})
    result = {
        "model": str(model), "test_images": len(images), "machine": _machine(),
        "method": {"repeats": repeats, "images_per_round": images_per_round, "interleaved": True,
                   "timed": "network alone (float32 [B,1,28,28] -> logits)", "throughput": "median over rounds",
                   "latency": "p50/p99 over all timed calls"},
        "rows": rows,
    }
    result["speedup_vs_torch"] = _speedups(result["rows"])
    if out is not None:
        write_json(result, out)
    return result


def _runners(model: str | Path, backends: Sequence[str] | None, tmp: Path, data_dir: Any, parity: int,
             log: Log) -> dict:
    """Backend name -> (Backend, file size in bytes or None): exports made here for a checkpoint source."""
    from digitrec.read.recognizer import resolve_model

    paths = resolve_model(model)
    kind = file_kind(paths[0])
    if kind != "torch":  # an exported file: bench it as it is
        backend = load_backend(paths[0], backends[0] if backends and len(backends) == 1 else None)
        if backends and list(backends) != [backend.name]:
            raise DigitrecError(f"bench: {paths[0]} is an {backend.name} file; it cannot be timed as {list(backends)}")
        return {backend.name: (backend, paths[0].stat().st_size)}
    names = list(backends or BACKENDS)
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise DigitrecError(f"bench: unknown backend(s) {unknown} (known: {', '.join(BACKENDS)})")
    runners: dict[str, tuple[Backend, int | None]] = {}
    for name in names:
        if name == "torch":
            runners[name] = (load_backend(model, "torch"), sum(p.stat().st_size for p in paths))
            continue
        log(f"exporting {model} to {name}")
        # The accuracy pass below measures the full test set, so the export checks a sample only.
        path = export(model, format=name, out=tmp / f"model{FORMATS[name].suffix}", data_dir=data_dir,
                      parity_images=parity, max_drop=None)
        runners[name] = (load_backend(path, name), path.stat().st_size)
    return runners


def _accuracy(runners: dict, images: np.ndarray, labels: np.ndarray, batch: int = 256) -> list[dict]:
    """One untimed pass per backend: accuracy, and agreement with torch when torch is in the run."""
    logits = {name: np.concatenate([b.logits(images[i : i + batch]) for i in range(0, len(images), batch)])
              for name, (b, _) in runners.items()}
    ref = logits.get("torch")
    rows = []
    for name, z in logits.items():
        row = {"backend": name, "file_bytes": runners[name][1], "accuracy": float((z.argmax(1) == labels).mean())}
        if ref is not None:
            row["agreement_with_torch"] = float((z.argmax(1) == ref.argmax(1)).mean())
            row["max_logit_diff_vs_torch"] = float(np.abs(z - ref).max())
        rows.append(row)
    return rows


def _time_batch(runners: dict, images: np.ndarray, batch: int, repeats: int, per_round: int) -> dict[str, dict]:
    calls = max(1, per_round // batch)
    starts = [(i * batch) % max(1, len(images) - batch + 1) for i in range(calls)]
    inputs = [np.ascontiguousarray(images[s : s + batch]) for s in starts]
    if any(len(x) != batch for x in inputs):
        raise DigitrecError(f"bench: batch {batch} is larger than the {len(images)} test images")
    rates: dict[str, list[float]] = {name: [] for name in runners}
    latencies: dict[str, list[float]] = {name: [] for name in runners}
    for name, (backend, _) in runners.items():  # warm this batch shape up
        for x in inputs[:3]:
            backend.logits(x)
    for _ in range(repeats):
        for name, (backend, _) in runners.items():
            lat = []
            for x in inputs:
                t0 = time.perf_counter_ns()
                backend.logits(x)
                lat.append(time.perf_counter_ns() - t0)
            rates[name].append(batch * calls / (sum(lat) / 1e9))
            latencies[name] += lat
    return {name: {"images_per_s": statistics.median(rates[name]), "rounds": rates[name],
                   "p50_ms": float(np.percentile(latencies[name], 50)) / 1e6,
                   "p99_ms": float(np.percentile(latencies[name], 99)) / 1e6, "calls": len(latencies[name])}
            for name in runners}


def _speedups(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for b in sorted({r["batch"] for r in rows}):
        at = {r["backend"]: r["images_per_s"] for r in rows if r["batch"] == b}
        if "torch" in at:
            out[str(b)] = {name: round(v / at["torch"], 3) for name, v in at.items() if name != "torch"}
    return out


def format_table(result: dict[str, Any]) -> str:
    """The result as a text table: one row per backend and batch size."""
    head = f"{'backend':<12}{'batch':>6}{'images/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'x torch':>9}{'accuracy':>10}" \
           f"{'size KB':>9}"
    lines = [f"{result['model']} on {result['machine']['cpu']} ({result['machine']['cores']} cores), "
             f"{result['test_images']} MNIST test images", head]
    for r in sorted(result["rows"], key=lambda r: (r["batch"], BACKENDS.index(r["backend"]))):
        ratio = result["speedup_vs_torch"].get(str(r["batch"]), {}).get(r["backend"])
        shown = "" if ratio is None else f"{ratio:.2f}"
        size = "" if r["file_bytes"] is None else f"{r['file_bytes'] / 1024:.0f}"
        lines.append(f"{r['backend']:<12}{r['batch']:>6}{r['images_per_s']:>11.0f}{r['p50_ms']:>9.3f}"
                     f"{r['p99_ms']:>9.3f}{shown:>9}{100 * r['accuracy']:>9.2f}%{size:>9}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write `result` as JSON atomically (temp file beside it, then rename)."""
    p = Path(path)
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return p


def cpu_model() -> str:
    """The CPU's model name (timings depend on it more than on anything in the code), or the platform's word."""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        name = None
    return name or platform.processor() or platform.machine()


def _machine() -> dict[str, Any]:
    import onnxruntime

    return {"cpu": cpu_model(), "cores": usable_cores(), "torch_threads": torch.get_num_threads(),
            "onnxruntime_threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
