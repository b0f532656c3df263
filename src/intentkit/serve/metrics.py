"""Prometheus metrics, one registry per app (no global state: tests build many apps)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Routes labelled by name; anything else is "other" so a scanner can't explode the label set.
KNOWN_ROUTES = frozenset(
    {"/ping", "/invocations", "/predict", "/info", "/health", "/metrics", "/docs", "/openapi.json"}
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """The server's metrics: requests, latency, batch sizes, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "intentkit_requests",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "intentkit_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "intentkit_batch_size",
            "Texts per forward pass",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            "intentkit_batch_padded_tokens",
            "Padded tokens (texts x longest) per forward pass",
            buckets=(16, 64, 256, 1024, 4096, 16384, 65536),
            registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "intentkit_forward_duration_seconds",
            "Model forward-pass time per batch",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "intentkit_queue_depth",
            "Texts waiting for a forward pass (tokenizing or queued)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "intentkit_overloaded",
            "Requests answered 429 because the queue was full",
            registry=self.registry,
        )
        # Traffic (intentkit.serve.capture): every answered text, capture on or off.
        self.answers = Counter(
            "intentkit_answers", "Answered texts by answer label", ["label"], registry=self.registry
        )
        self.rejection_rate = Gauge(
            "intentkit_rejection_rate",
            "Share of the last 1000 answered texts rejected as out-of-scope",
            registry=self.registry,
        )
        self.capture_lines = Counter(
            "intentkit_capture_lines", "Lines written by --capture", registry=self.registry
        )
        self.capture_dropped = Counter(
            "intentkit_capture_dropped",
            "Answered texts not captured: queue_full (writer behind) or write_error (disk)",
            ["reason"],
            registry=self.registry,
        )

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request."""
        route = path if path in KNOWN_ROUTES else "other"
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass the request through, recording route, status and latency."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response starts is a 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - start)
