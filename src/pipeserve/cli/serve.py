"""`pipeserve serve`: serve packaged models over the Open Inference Protocol (REST and gRPC).

Also a KServe ServingRuntime entry point: it accepts the arguments KServe passes to a runtime
container (``--model_name``, ``--model_dir``, ``--http_port``, ``--grpc_port``) and then binds
0.0.0.0 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pipeserve.errors import ConfigError
from pipeserve.objectstore import local_model_path
from pipeserve.serving.settings import (
    ANY_PORT,
    BACKENDS,
    DEFAULT_HTTP_PORT,
    DEFAULT_MAX_REQUEST_BYTES,
    LOG_LEVELS,
    ServeSettings,
)

_KSERVE_ARGS = ("model_name", "model_dir_flag", "http_port_kserve", "grpc_port_kserve")
_AUTO = "auto"


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "serve",
        help="Serve packaged models over the v2 inference protocol (REST and gRPC).",
        description="Serve every model of a model directory or model repository over the Open Inference "
        "Protocol: REST on --http-port, gRPC on --grpc-port (off unless given), Prometheus on /metrics.",
    )
    parser.add_argument("model_dir", nargs="?", metavar="MODEL_DIR",
                        help="A model directory (with model-card.json) or a repository of them "
                        "(`make run` writes build/model), or its storage URI (s3://bucket/path/: downloaded "
                        "to $PIPESERVE_MODEL_CACHE and verified first; endpoint and keys from the AWS_* "
                        "variables, e.g. AWS_ENDPOINT_URL), or a registered version NAME@ALIAS (iris@champion) or "
                        "NAME/VERSION (iris/3) from --registry, downloaded and verified first.")
    parser.add_argument("--registry", metavar="URI",
                        help="The model registry NAME@ALIAS or NAME/VERSION is read from (default "
                        "$PIPESERVE_REGISTRY, else ./mlflow.db).")
    parser.add_argument("--host", default=None, metavar="ADDR",
                        help="Address to bind (default 127.0.0.1; 0.0.0.0 when started with KServe's runtime "
                        "arguments).")
    parser.add_argument("--http-port", type=_port, default=None, metavar="PORT",
                        help="HTTP port (default 8080); 0 or auto: any free port (the ready line says which).")
    parser.add_argument("--grpc-port", type=_port, default=None, metavar="PORT",
                        help="gRPC port (default: no gRPC locally; KServe passes --grpc_port); auto: any free port "
                        "(the ready line says which); 0: no gRPC.")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="Server processes sharing the ports (default 1).")
    parser.add_argument("--max-request-bytes", type=int, default=None, metavar="BYTES",
                        help="Largest request body / gRPC message accepted; larger gets 413 (default 64 MiB).")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                        help="Server log level (default info).")
    parser.add_argument("--access-log", action="store_true", help="Log one line per request (off by default).")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="auto: ONNX Runtime when model.onnx exists, else scikit-learn from model.skops.")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="Native threads per worker: ONNX Runtime intra-op, or OpenMP/BLAS for scikit-learn "
                        "(default: cores // workers for ONNX, 1 for scikit-learn).")
    parser.add_argument("--grace-period", type=float, default=30.0, metavar="SECONDS",
                        help="Seconds in-flight requests get to finish after SIGTERM (default 30).")
    parser.add_argument("--drain-seconds", type=float, default=0.0, metavar="SECONDS",
                        help="Seconds to keep serving after SIGTERM with readiness false (default 0).")
    kserve = parser.add_argument_group("KServe runtime arguments")
    kserve.add_argument("--model_name", default=None, metavar="NAME",
                        help="Serve the single model under this name (the InferenceService name).")
    kserve.add_argument("--model_dir", dest="model_dir_flag", default=None, metavar="DIR",
                        help="Same as MODEL_DIR.")
    kserve.add_argument("--http_port", dest="http_port_kserve", type=_port, default=None, metavar="PORT",
                        help="Same as --http-port.")
    kserve.add_argument("--grpc_port", dest="grpc_port_kserve", type=_port, default=None, metavar="PORT",
                        help="Same as --grpc-port.")
    parser.set_defaults(func=_run, command="serve")
    return parser


def build_settings(args: argparse.Namespace) -> ServeSettings:
    """Map the parsed arguments (and KServe's spellings of them) onto the settings, which check themselves.

    Raises:
        ConfigError: two spellings of one option disagree, no model is given, or the settings
            refuse a value (see :class:`~pipeserve.serving.settings.ServeSettings`).
    """
    if (args.model_dir is not None and args.model_dir_flag is not None
            and os.fspath(args.model_dir).rstrip("/") != os.fspath(args.model_dir_flag).rstrip("/")):
        raise ConfigError(f"MODEL_DIR {args.model_dir} and --model_dir {args.model_dir_flag} disagree; give one.")
    model_dir = args.model_dir or args.model_dir_flag
    if model_dir is None:
        raise ConfigError("No model given: pass MODEL_DIR (e.g. build/model from `make run`) or --model_dir.")
    kserve_mode = any(getattr(args, name) is not None for name in _KSERVE_ARGS)
    http_port = _one(args.http_port, args.http_port_kserve, "--http-port", "--http_port")
    grpc_port = _one(args.grpc_port, args.grpc_port_kserve, "--grpc-port", "--grpc_port")
    # On the command line (and for KServe) --grpc-port 0 means no gRPC; the settings spell that None.
    grpc_setting = None if grpc_port in (None, 0) else (ANY_PORT if grpc_port == _AUTO else grpc_port)
    return ServeSettings(
        model_dir=local_model_path(model_dir),
        host=args.host or ("0.0.0.0" if kserve_mode else "127.0.0.1"),
        http_port=DEFAULT_HTTP_PORT if http_port is None else (ANY_PORT if http_port == _AUTO else http_port),
        grpc_port=grpc_setting,
        workers=args.workers,
        max_request_bytes=DEFAULT_MAX_REQUEST_BYTES if args.max_request_bytes is None else args.max_request_bytes,
        log_level=args.log_level,
        access_log=args.access_log,
        model_name=args.model_name,
        backend=args.backend,
        threads=args.threads,
        grace_period=args.grace_period,
        drain_seconds=args.drain_seconds,
    )


def _port(text: str) -> int | str:
    """A port number, or ``auto`` (any free port)."""
    if text == _AUTO:
        return _AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number or auto; got {text!r}") from None


def _one(a: int | str | None, b: int | str | None, name_a: str, name_b: str) -> int | str | None:
    if a is not None and b is not None and a != b:
        raise ConfigError(f"{name_a} {a} and {name_b} {b} disagree; give one.")
    return a if a is not None else b


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from pipeserve.registry import is_model_ref
    from pipeserve.serving.server import serve

    if args.model_dir is None or not is_model_ref(args.model_dir):
        return serve(build_settings(args), started)
    from pipeserve.registry import resolve_temporary

    # An alias is read once; the verified copy lives as long as the server.
    with resolve_temporary(args.model_dir, registry=args.registry) as found:
        print(f"pipeserve serve: {args.model_dir} is {found.version.name} version {found.version.version} "
              "(downloaded and verified against its card)", file=sys.stderr, flush=True)
        args.model_dir = str(found.repository)
        return serve(build_settings(args), started)
