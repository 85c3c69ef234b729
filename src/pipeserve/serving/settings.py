"""Typed settings of the inference server, built once from the command line (never at import).

The settings check themselves when built, so a library caller cannot build an impossible server
(``workers=0``) any more than the command line can. Messages name the options of `pipeserve
serve`, each of which is the field of the same name (``--http-port`` is ``http_port``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from pipeserve.errors import ConfigError

DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 8081
#: A port of 0 asks the operating system for any free port; the ready line says which it chose.
ANY_PORT = 0
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
MIN_MAX_REQUEST_BYTES = 1024
BACKENDS = ("auto", "onnx", "sklearn")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServeSettings:
    """Everything `pipeserve serve` needs to run.

    Args:
        model_dir: A model directory or a repository of model directories.
        host: Address to bind (HTTP and gRPC).
        http_port: HTTP port; 0 (:data:`ANY_PORT`) for any free port.
        grpc_port: gRPC port; 0 for any free port; ``None`` (the local default) disables gRPC.
            KServe passes 8081.
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

    def __post_init__(self) -> None:
        """Refuse settings no server can run with.

        Raises:
            ConfigError: naming the option, what it must be and what it got.
        """
        problem = _problem(self)
        if problem:
            raise ConfigError(problem)

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


def _problem(s: ServeSettings) -> str | None:
    """What is wrong with ``s``, or None; the first problem in option order."""
    if not (s.http_port == ANY_PORT or 1 <= s.http_port <= 65535):
        return f"--http-port must be between 1 and 65535 (or 0: any free port); got {s.http_port}."
    if s.grpc_port is not None and not 0 <= s.grpc_port <= 65535:
        return f"--grpc-port must be between 1 and 65535; got {s.grpc_port}."
    if s.grpc_port is not None and s.grpc_port != ANY_PORT and s.grpc_port == s.http_port:
        return f"--grpc-port and --http-port must differ; both are {s.http_port}."
    if s.workers < 1:
        return f"--workers must be at least 1; got {s.workers}."
    if s.max_request_bytes < MIN_MAX_REQUEST_BYTES:
        return f"--max-request-bytes must be at least {MIN_MAX_REQUEST_BYTES}; got {s.max_request_bytes}."
    if s.log_level not in LOG_LEVELS:
        return f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {s.log_level!r}."
    if s.backend not in BACKENDS:
        return f"--backend must be one of {', '.join(BACKENDS)}; got {s.backend!r}."
    if s.threads is not None and s.threads < 1:
        return f"--threads must be at least 1; got {s.threads}."
    if s.grace_period < 0 or s.drain_seconds < 0:
        return (f"--grace-period and --drain-seconds must not be negative; got {s.grace_period:g} and "
                f"{s.drain_seconds:g}.")
    if s.inline_rows < 0:
        return f"inline_rows must not be negative; got {s.inline_rows}."
    return None
