"""Prometheus metrics of the server, defined once and bound to an injected registry.

With ``--workers 1`` the metrics live in the process's own registry. With ``--workers N`` the
server runs prometheus_client's multiprocess mode: the parent sets ``PROMETHEUS_MULTIPROC_DIR``
before it starts the workers (and before any of them imports prometheus_client), every worker
writes its samples there, and ``GET /metrics`` on any worker aggregates all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 2, 5, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


class Metrics:
    """The server's metrics.

    Args:
        registry: Where the metrics are registered (a fresh one per server, so tests and
            several servers in one process do not collide).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "pipeserve_requests", "Requests answered, by model, route and status code.",
            ["model", "route", "status"], registry=reg,
        )
        self.latency = Histogram(
            "pipeserve_request_duration_seconds", "Time from request received to response sent.",
            ["model", "route"], buckets=_LATENCY_BUCKETS, registry=reg,
        )
        self.rows = Histogram(
            "pipeserve_inference_rows", "Rows (batch size) per inference request.",
            ["model"], buckets=_ROW_BUCKETS, registry=reg,
        )
        self.load_seconds = Gauge(
            "pipeserve_model_load_seconds", "Seconds it took to verify and load the model.",
            ["model"], registry=reg, multiprocess_mode="max",
        )
        # Label children cached: .labels() costs more than the observation itself.
        self._children: dict[tuple[str, ...], Any] = {}

    def observe(self, model: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (model, route, str(status))
        pair = self._children.get(key)
        if pair is None:
            pair = (self.requests.labels(*key), self.latency.labels(model, route))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def observe_rows(self, model: str, rows: int) -> None:
        key = ("rows", model)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.rows.labels(model)
        child.observe(rows)

    def render(self) -> bytes:
        """The Prometheus text exposition of all workers (multiprocess) or of this process."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
