"""Request counters and a latency histogram, rendered in the Prometheus text format (no client library needed).

Each worker process keeps its own numbers; a scraper sums them across workers.
"""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict

# Upper bounds in seconds; +Inf is implied. Chosen around a CPU inference of a few milliseconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Thread-safe counts of requests by (method, path, status) and latencies by path."""

    def __init__(self, model: str, backend: str) -> None:
        self.model = model
        self.backend = backend
        self.ready = False
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._images: dict[str, int] = defaultdict(int)

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        with self._lock:
            self._requests[(method, path, status)] += 1
            counts = self._buckets.setdefault(path, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[path] += seconds

    def count_image(self, outcome: str) -> None:
        """Count one image read ('read', 'abstained' or 'error')."""
        with self._lock:
            self._images[outcome] += 1

    def render(self) -> str:
        """The Prometheus text exposition of everything counted so far."""
        with self._lock:
            lines = [
                "# HELP digitrec_model_info The model this worker serves (value is always 1).",
                "# TYPE digitrec_model_info gauge",
                f'digitrec_model_info{{model="{_esc(self.model)}",backend="{_esc(self.backend)}"}} 1',
                "# HELP digitrec_model_ready 1 once the model is loaded and warmed up.",
                "# TYPE digitrec_model_ready gauge",
                f"digitrec_model_ready {int(self.ready)}",
                "# HELP digitrec_http_requests_total HTTP requests answered, by method, path and status.",
                "# TYPE digitrec_http_requests_total counter",
            ]
            for (method, path, status), n in sorted(self._requests.items()):
                lines.append(f'digitrec_http_requests_total{{method="{method}",path="{_esc(path)}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP digitrec_http_request_duration_seconds Time from request to the end of the answer.",
                      "# TYPE digitrec_http_request_duration_seconds histogram"]
            for path, counts in sorted(self._buckets.items()):
                label = f'path="{_esc(path)}"'
                total = 0
                for bound, n in zip((*map(_num, BUCKETS), "+Inf"), counts, strict=True):
                    total += n
                    lines.append(f'digitrec_http_request_duration_seconds_bucket{{{label},le="{bound}"}} {total}')
                lines.append(f"digitrec_http_request_duration_seconds_sum{{{label}}} {self._sums[path]:.6f}")
                lines.append(f"digitrec_http_request_duration_seconds_count{{{label}}} {total}")
            lines += ["# HELP digitrec_images_total Images read, by outcome.", "# TYPE digitrec_images_total counter"]
            lines += [f'digitrec_images_total{{outcome="{k}"}} {n}' for k, n in sorted(self._images.items())]
        return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return repr(float(x))


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
