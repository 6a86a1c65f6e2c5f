"""Server metrics for `GET /metrics`: request counts, latencies, queue depth, batch sizes, per-adapter counts.

    curl -s 127.0.0.1:8000/metrics                 # Prometheus text format
    curl -s '127.0.0.1:8000/metrics?format=json'   # the same numbers as JSON

Latency quantiles (p50/p95) are computed over the last `window` requests of each endpoint.
Everything is updated on the server's event loop only (the generation thread never touches it), so no
locks are needed.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Metrics:
    """Counters and latency windows of one server."""

    def __init__(self, window: int = 2048):
        self.started = time.time()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()  # (endpoint, status)
        self.adapters: collections.Counter[str] = collections.Counter()  # rows generated per adapter
        self.latency: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=window)
        )
        self.first_token: collections.deque[float] = collections.deque(maxlen=window)
        self.queue_depth = 0
        self.rejected = 0
        self.cancelled = 0
        self.batches = 0
        self.batch_rows = 0
        self.max_batch_seen = 0
        self.completion_tokens = 0

    def record_request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        """One finished request (any status)."""
        self.requests[(endpoint, status)] += 1
        if seconds is not None and status == 200:
            self.latency[endpoint].append(seconds)

    def record_batch(self, size: int, adapters: list[str | None]) -> None:
        """One batch handed to the backend."""
        self.batches += 1
        self.batch_rows += size
        self.max_batch_seen = max(self.max_batch_seen, size)
        self.adapters.update(a or "base" for a in adapters)

    def snapshot(self) -> dict[str, Any]:
        """All numbers as a JSON-able dict."""
        latency = {
            endpoint: {
                "count": len(values),
                "p50_s": _finite(quantile(list(values), 0.5)),
                "p95_s": _finite(quantile(list(values), 0.95)),
                "mean_s": _finite(sum(values) / len(values) if values else math.nan),
            }
            for endpoint, values in self.latency.items()
        }
        requests: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for (endpoint, status), count in sorted(self.requests.items()):
            requests[endpoint][str(status)] = count
        return {
            "uptime_s": time.time() - self.started,
            "requests": dict(requests),
            "latency": latency,
            "time_to_first_token_p50_s": _finite(quantile(list(self.first_token), 0.5)),
            "queue_depth": self.queue_depth,
            "rejected_queue_full": self.rejected,
            "cancelled": self.cancelled,
            "batches": self.batches,
            "mean_batch_size": self.batch_rows / self.batches if self.batches else 0.0,
            "max_batch_size": self.max_batch_seen,
            "completion_tokens": self.completion_tokens,
            "adapter_rows": dict(self.adapters),
        }

    def prometheus(self) -> str:
        """The Prometheus text exposition of `snapshot()`."""
        snap, lines = self.snapshot(), []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.extend([f"# HELP forgetless_{name} {help_text}", f"# TYPE forgetless_{name} {kind}"])
            lines.extend(f"forgetless_{name}{labels} {_num(value)}" for labels, value in samples)

        metric(
            "requests_total",
            "counter",
            "Requests by endpoint and HTTP status.",
            [(f'{{endpoint="{e}",status="{s}"}}', n) for e, by in snap["requests"].items() for s, n in by.items()],
        )
        quantiles = []
        for endpoint, stats in snap["latency"].items():
            quantiles += [(f'{{endpoint="{endpoint}",quantile="0.5"}}', stats["p50_s"])]
            quantiles += [(f'{{endpoint="{endpoint}",quantile="0.95"}}', stats["p95_s"])]
        metric("request_latency_seconds", "summary", "Latency of successful requests.", quantiles)
        metric("queue_depth", "gauge", "Requests waiting for a batch.", [("", snap["queue_depth"])])
        metric("rejected_total", "counter", "Requests refused with 429 (queue full).", [("", self.rejected)])
        metric("cancelled_total", "counter", "Requests whose client went away.", [("", self.cancelled)])
        metric("batches_total", "counter", "Batches generated.", [("", self.batches)])
        metric("batch_rows_total", "counter", "Rows generated in batches.", [("", self.batch_rows)])
        metric("completion_tokens_total", "counter", "Tokens generated.", [("", self.completion_tokens)])
        adapters = [(f'{{adapter="{name}"}}', n) for name, n in sorted(snap["adapter_rows"].items())]
        metric("adapter_rows_total", "counter", "Rows generated per adapter (base = no adapter).", adapters)
        return "\n".join(lines) + "\n"


def _finite(value: float) -> float | None:
    """JSON has no NaN: empty statistics become null."""
    return None if math.isnan(value) else value


def _num(value: float | None) -> str:
    return "NaN" if value is None else f"{value:g}"
