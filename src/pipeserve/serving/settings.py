"""Typed settings of the inference server, built once from the command line (never at import)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 8081
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
BACKENDS = ("auto", "onnx", "sklearn")


@dataclass(frozen=True)
class ServeSettings:
    """Everything `pipeserve serve` needs to run.

    Args:
        model_dir: A model directory or a repository of model directories.
        host: Address to bind (HTTP and gRPC).
        http_port: HTTP port.
        grpc_port: gRPC port; ``None`` (the local default) disables gRPC. KServe passes 8081.
        workers: Number of server processes sharing the ports (SO_REUSEPORT).
        max_request_bytes: Largest request body (HTTP) or message (gRPC) accepted; larger gets 413.
        log_level: Python logging level name for the server's own log.
        access_log: Log one line per request (off by default: it costs throughput).
        model_name: Serve the single model of ``model_dir`` under this name (KServe passes the
            InferenceService name).
        backend: ``auto`` (ONNX when model.onnx exists), ``onnx`` or ``sklearn``.
        threads: Native threads per worker (ONNX Runtime intra-op; OpenMP/BLAS for scikit-learn);
            ``None``: see :meth:`native_threads`.
        grace_period: Seconds in-flight requests get to finish after SIGTERM.
        drain_seconds: Seconds to keep serving after SIGTERM with readiness false, so load
            balancers stop routing here before the listener closes.
        inline_rows: Batches up to this many rows run on the event loop; larger ones on a thread,
            so health checks stay answered during a big request.
    """

    model_dir: Path
    host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int | None = None
    workers: int = 1
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    log_level: str = "info"
    access_log: bool = False
    model_name: str | None = None
    backend: str = "auto"
    threads: int | None = None
    grace_period: float = 30.0
    drain_seconds: float = 0.0
    inline_rows: int = 4096

    def native_threads(self, backend: str) -> int:
        """Native threads per worker for ``backend`` (``onnx`` or ``sklearn``).

        ONNX Runtime (spinning off): the worker's share of the cores. scikit-learn: 1, because
        OpenMP workers spin-wait against the event loop on the same cores (HistGradientBoosting,
        1 row at c16 on 2 cores: ~1,200 req/s with 1 thread, ~450 with 2, ~300 unlimited).
        """
        if self.threads:
            return self.threads
        if backend == "sklearn":
            return 1
        return max(1, available_cpus() // self.workers)


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 CPU quota.

    In a Kubernetes pod ``os.cpu_count()`` is the node's core count; the container's CPU limit
    only shows in ``/sys/fs/cgroup/cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)
