"""`pipeserve serve`: serve packaged models over the Open Inference Protocol (REST and gRPC).

Also a KServe ServingRuntime entry point: it accepts the arguments KServe passes to a runtime
container (``--model_name``, ``--model_dir``, ``--http_port``, ``--grpc_port``) and then binds
0.0.0.0 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeserve.errors import ConfigError

if TYPE_CHECKING:
    from pipeserve.serving.settings import ServeSettings

_KSERVE_ARGS = ("model_name", "model_dir_flag", "http_port_kserve", "grpc_port_kserve")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "serve",
        help="Serve packaged models over the v2 inference protocol (REST and gRPC).",
        description="Serve every model of a model directory or model repository over the Open Inference "
        "Protocol: REST on --http-port, gRPC on --grpc-port (off unless given), Prometheus on /metrics.",
    )
    parser.add_argument("model_dir", nargs="?", type=Path, metavar="MODEL_DIR",
                        help="A model directory (with model-card.json) or a repository of them (`make run` writes build/model).")
    parser.add_argument("--host", default=None, metavar="ADDR",
                        help="Address to bind (default 127.0.0.1; 0.0.0.0 when started with KServe's runtime arguments).")
    parser.add_argument("--http-port", type=int, default=None, metavar="PORT", help="HTTP port (default 8080).")
    parser.add_argument("--grpc-port", type=int, default=None, metavar="PORT",
                        help="gRPC port (default: no gRPC locally; KServe passes --grpc_port). 0 disables gRPC.")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="Server processes sharing the ports (default 1).")
    parser.add_argument("--max-request-bytes", type=int, default=None, metavar="BYTES",
                        help="Largest request body / gRPC message accepted; larger gets 413 (default 64 MiB).")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="Server log level (default info).")
    parser.add_argument("--access-log", action="store_true", help="Log one line per request (off by default).")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnx", "sklearn"],
                        help="auto: ONNX Runtime when model.onnx exists, else scikit-learn from model.skops.")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="Native threads per worker: ONNX Runtime intra-op, or OpenMP/BLAS for scikit-learn "
                        "(default: cores // workers for ONNX, 1 for scikit-learn).")
    parser.add_argument("--grace-period", type=float, default=30.0, metavar="SECONDS",
                        help="Seconds in-flight requests get to finish after SIGTERM (default 30).")
    parser.add_argument("--drain-seconds", type=float, default=0.0, metavar="SECONDS",
                        help="Seconds to keep serving after SIGTERM with readiness false (default 0).")
    kserve = parser.add_argument_group("KServe runtime arguments")
    kserve.add_argument("--model_name", default=None, metavar="NAME", help="Serve the single model under this name (the InferenceService name).")
    kserve.add_argument("--model_dir", dest="model_dir_flag", type=Path, default=None, metavar="DIR", help="Same as MODEL_DIR.")
    kserve.add_argument("--http_port", dest="http_port_kserve", type=int, default=None, metavar="PORT", help="Same as --http-port.")
    kserve.add_argument("--grpc_port", dest="grpc_port_kserve", type=int, default=None, metavar="PORT", help="Same as --grpc-port.")
    parser.set_defaults(func=_run, command="serve")
    return parser


def build_settings(args: argparse.Namespace) -> ServeSettings:
    """Build the typed settings from parsed arguments; raise ConfigError on contradictions."""
    from pipeserve.serving.settings import DEFAULT_HTTP_PORT, DEFAULT_MAX_REQUEST_BYTES, ServeSettings

    if args.model_dir is not None and args.model_dir_flag is not None and args.model_dir != args.model_dir_flag:
        raise ConfigError(f"MODEL_DIR {args.model_dir} and --model_dir {args.model_dir_flag} disagree; give one.")
    model_dir = args.model_dir or args.model_dir_flag
    if model_dir is None:
        raise ConfigError("No model given: pass MODEL_DIR (e.g. build/model from `make run`) or --model_dir.")
    kserve_mode = any(getattr(args, name) is not None for name in _KSERVE_ARGS)
    http_port = _one(args.http_port, args.http_port_kserve, "--http-port", "--http_port")
    grpc_port = _one(args.grpc_port, args.grpc_port_kserve, "--grpc-port", "--grpc_port")
    http_port = DEFAULT_HTTP_PORT if http_port is None else http_port
    if not 1 <= http_port <= 65535:
        raise ConfigError(f"--http-port must be between 1 and 65535; got {http_port}.")
    if grpc_port is not None and not 0 <= grpc_port <= 65535:
        raise ConfigError(f"--grpc-port must be between 0 (off) and 65535; got {grpc_port}.")
    if grpc_port is not None and grpc_port == http_port:
        raise ConfigError(f"--grpc-port and --http-port must differ; both are {http_port}.")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1; got {args.workers}.")
    max_bytes = DEFAULT_MAX_REQUEST_BYTES if args.max_request_bytes is None else args.max_request_bytes
    if max_bytes < 1024:
        raise ConfigError(f"--max-request-bytes must be at least 1024; got {max_bytes}.")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1; got {args.threads}.")
    if args.grace_period < 0 or args.drain_seconds < 0:
        raise ConfigError("--grace-period and --drain-seconds must not be negative.")
    return ServeSettings(
        model_dir=Path(model_dir),
        host=args.host or ("0.0.0.0" if kserve_mode else "127.0.0.1"),
        http_port=http_port,
        grpc_port=grpc_port or None,
        workers=args.workers,
        max_request_bytes=max_bytes,
        log_level=args.log_level,
        access_log=args.access_log,
        model_name=args.model_name,
        backend=args.backend,
        threads=args.threads,
        grace_period=args.grace_period,
        drain_seconds=args.drain_seconds,
    )


def _one(a: int | None, b: int | None, name_a: str, name_b: str) -> int | None:
    if a is not None and b is not None and a != b:
        raise ConfigError(f"{name_a} {a} and {name_b} {b} disagree; give one.")
    return a if a is not None else b


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from pipeserve.serving.server import serve

    return serve(build_settings(args), started)
