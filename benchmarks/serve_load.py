"""Load test of `digitrec serve` on loopback: requests/s and p50/p99 latency, then a memory soak.

Starts a real server (subprocess, free localhost port), and for a one-digit and a ten-digit image at 1, 8 and
64 concurrent async clients sends POST /v1/read for --duration seconds each. Every answer must be 200 with the
right digits, else it counts as failed. Then --soak seconds of mixed traffic while sampling the server's RSS
(all its processes) every second. Everything is bounded in time; only 127.0.0.1 is contacted.

    python benchmarks/serve_load.py                          # default model, 1 worker, 10 s per cell, 120 s soak
    python benchmarks/serve_load.py --workers 2 --soak 30 --out benchmarks/results/serve_load.json
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np
from PIL import Image

from digitrec.data.mnist import load_mnist
from digitrec.serve.process import start_server


def images() -> dict[str, tuple[bytes, str]]:
    """PNG bytes and expected digits: one MNIST test digit, and the first ten side by side (dark ink on white)."""
    test = load_mnist(log=lambda _m: None)["test"]
    digits, labels = test.images[:10].numpy(), test.labels[:10].tolist()

    def png(idx: range) -> bytes:
        row = np.concatenate([255 - digits[i] for i in idx], axis=1)
        img = Image.fromarray(np.pad(row, 8, constant_values=255)).resize((row.shape[1] * 3 + 48, 28 * 3 + 48))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()

    return {"1 digit": (png(range(1)), str(labels[0])),
            "10 digits": (png(range(10)), "".join(map(str, labels)))}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the uvicorn workers), in MiB, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


async def load(url: str, work: list[tuple[bytes, str]], clients: int, seconds: float,
               on_tick=None) -> dict:
    """`clients` loops posting images round-robin for `seconds`; latencies of the good answers and failures."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def one_client(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                data, expected = work[i % len(work)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/read", content=data, headers={"content-type": "image/png"})
                    ok = r.status_code == 200 and r.json()["digits"] == expected
                    reason = f"{r.status_code} {r.text[:120]}"
                except httpx.HTTPError as e:
                    ok, reason = False, repr(e)
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failures.append(reason)

        async def ticker() -> None:
            while time.perf_counter() < stop:
                on_tick()
                await asyncio.sleep(1.0)

        start = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)), *([ticker()] if on_tick else []))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"clients": clients, "requests": len(latencies) + len(failures), "failed": len(failures),
            "failures_sample": failures[:3], "rps": len(latencies) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def soak(url: str, pid: int, work: list[tuple[bytes, str]], clients: int, seconds: float) -> dict:
    """Mixed traffic for `seconds`, RSS sampled every second; 'growth' compares the last and first fifths."""
    samples: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    result = asyncio.run(load(url, work, clients, seconds,
                              on_tick=lambda: samples.append((time.perf_counter() - t0, tree_rss_mb(pid)))))
    rss = np.array([m for _, m in samples])
    fifth = max(1, len(rss) // 5)
    first, last = float(rss[:fifth].mean()), float(rss[-fifth:].mean())
    return {**result, "seconds": seconds, "rss_first_mb": first, "rss_last_mb": last, "rss_max_mb": float(rss.max()),
            "rss_growth_pct": 100 * (last - first) / first, "rss_samples": samples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model to serve (default: default)")
    ap.add_argument("--backend", default="", help="server backend (default: the CLI's default)")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (default: 1)")
    ap.add_argument("--concurrency", default="1,8,64", help="client counts (default: 1,8,64)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per (image, clients) cell (default: 10)")
    ap.add_argument("--soak", type=float, default=120.0, help="seconds of the memory soak; 0 skips it (default: 120)")
    ap.add_argument("--soak-clients", type=int, default=8, help="concurrent clients during the soak (default: 8)")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    args = ap.parse_args()

    work = images()
    server_args = ["--model", args.model, "--workers", str(args.workers), "--log-level", "warning"]
    server = start_server(server_args + (["--backend", args.backend] if args.backend else []))
    proc, url, log = server.proc, server.url, server.log
    rows: list[dict] = []
    try:
        asyncio.run(load(url, list(work.values()), 4, 2.0))  # warm-up, not reported
        rss_start = tree_rss_mb(proc.pid)
        for name, item in work.items():
            for clients in map(int, args.concurrency.split(",")):
                rows.append({"image": name, **asyncio.run(load(url, [item], clients, args.duration))})
                print_row(rows[-1])
        soaked = soak(url, proc.pid, list(work.values()), args.soak_clients, args.soak) if args.soak > 0 else None
    finally:
        server.stop()
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "model": args.model,
              "backend": args.backend or "cli default", "workers": args.workers, "duration_s": args.duration,
              "rss_after_warmup_mb": rss_start, "rows": rows, "soak": soaked, "server_log": str(log)}
    print_table(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(out)
    failed = sum(r["failed"] for r in rows) + (soaked["failed"] if soaked else 0)
    return 1 if failed else 0


def print_row(r: dict) -> None:
    print(f"  {r['image']:<10} {r['clients']:>3} clients: {r['rps']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
          f"p99 {r['p99_ms']:7.1f} ms  failed {r['failed']}", file=sys.stderr, flush=True)


def print_table(report: dict) -> None:
    print(f"\ndigitrec serve on {report['machine']}; model {report['model']}, backend {report['backend']}, "
          f"{report['workers']} worker(s), {report['duration_s']:.0f} s per row\n")
    print("| image | clients | requests | req/s | p50 ms | p99 ms | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in report["rows"]:
        print(f"| {r['image']} | {r['clients']} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['failed']} |")
    s = report["soak"]
    if s:
        print(f"\nsoak: {s['seconds']:.0f} s, {s['clients']} clients, {s['requests']} requests, {s['failed']} failed, "
              f"{s['rps']:.1f} req/s; server RSS {s['rss_first_mb']:.1f} MiB (first fifth) -> "
              f"{s['rss_last_mb']:.1f} MiB (last fifth), max {s['rss_max_mb']:.1f}, "
              f"growth {s['rss_growth_pct']:+.1f}%")


if __name__ == "__main__":
    sys.exit(main())
