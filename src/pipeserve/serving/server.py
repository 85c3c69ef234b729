"""Process orchestration of `pipeserve serve`: verify, load, bind, serve, drain, exit.

One worker runs in the CLI's own process. ``--workers N`` forks N processes after the parent
has verified every model file and bound the HTTP socket; the workers share that listening socket
(the kernel hands each connection to one of them) and bind the gRPC port with SO_REUSEPORT.
The parent imports neither numpy, ONNX Runtime, gRPC nor prometheus_client, so the workers fork
from a clean process and load their own models (ONNX Runtime sessions do not survive a fork).

Shutdown: SIGTERM (or SIGINT) turns readiness false, keeps serving for ``--drain-seconds``,
then closes the listeners, lets in-flight requests finish within ``--grace-period`` and exits 0.
With workers, the parent forwards the signal and exits 0 when all workers did.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeserve.errors import ConfigError, PipeserveError
from pipeserve.modelcard import find_model_dirs, read_card, verify_files
from pipeserve.serving.settings import ANY_PORT, ServeSettings

log = logging.getLogger("pipeserve.serve")


class ServerStartError(PipeserveError):
    """The server could not start (port in use, a worker failed to load)."""


def serve(settings: ServeSettings, started: float | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; return the exit code (0 after a graceful shutdown).

    Ports of 0 are bound to any free port; the ready line (stdout) names the ports bound.

    Args:
        settings: The server settings.
        started: ``time.perf_counter()`` at command start, for the "ready in" figure.
    """
    started = time.perf_counter() if started is None else started
    _configure_logging(settings.log_level)
    pairs = resolve_models(settings.model_dir, settings.model_name)
    # Verify before anything is bound or forked: a tampered file refuses to start, one line, exit 1.
    for model_dir, _ in pairs:
        verify_files(model_dir, read_card(model_dir))
    sock = _bind(settings.host, settings.http_port)
    grpc_hold: socket.socket | None = None
    try:
        settings = replace(settings, http_port=sock.getsockname()[1])
        if settings.grpc_port == ANY_PORT:
            grpc_hold = _hold_free_port(settings.host)
            settings = replace(settings, grpc_port=grpc_hold.getsockname()[1])
        elif settings.grpc_port:
            _check_port_free(settings.host, settings.grpc_port)
        if settings.workers == 1:
            return run_worker(settings, pairs, sock, lambda info: _print_ready(settings, info, started))
        return _run_workers(settings, pairs, sock, started)
    finally:
        sock.close()
        if grpc_hold is not None:
            grpc_hold.close()


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # uvicorn's own INFO lines (started, shutting down) are noise next to our ready line.
    uvicorn_level = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(uvicorn_level)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerStartError(
            f"Cannot listen on {host}:{port} for HTTP: {exc.strerror}. Choose another --http-port or stop what uses it."
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServerStartError(
                f"Cannot listen on {host}:{port} for gRPC: {exc.strerror}. Choose another --grpc-port "
                "(auto: any free port; 0 disables gRPC)."
            ) from exc


def _hold_free_port(host: str) -> socket.socket:
    """Bind (without listening) any free port with SO_REUSEPORT, so the workers' gRPC servers can
    bind it too (they set SO_REUSEPORT) while no other program can; close it at exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    hold = socket.socket(family, socket.SOCK_STREAM)
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        hold.bind((host, ANY_PORT))
    except OSError as exc:
        hold.close()
        raise ServerStartError(f"Cannot find a free port on {host} for gRPC: {exc.strerror}.") from exc
    return hold


def _address(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print_ready(settings: ServeSettings, info: list[dict[str, Any]], started: float) -> None:
    """The ready line (pipeserve.localserver reads the bound ports from it: keep its shape)."""
    models = ", ".join(
        f"{m['name']} v{m['version']} ({m['platform']}, {m['load_seconds'] * 1000:.0f} ms)" for m in info
    )
    grpc = f", gRPC {_address(settings.host, settings.grpc_port)}" if settings.grpc_port else ""
    print(
        f"pipeserve serve: ready in {time.perf_counter() - started:.2f}s on "
        f"http://{_address(settings.host, settings.http_port)}{grpc}; workers: {settings.workers}; models: {models}",
        flush=True,
    )


def resolve_models(model_dir: Path, model_name: str | None) -> list[tuple[Path, str]]:
    """Return ``(model directory, served name)`` for every model under ``model_dir``.

    With ``model_name`` (KServe passes the InferenceService name) the path must hold exactly one
    model, which is then served under that name.
    """
    dirs = find_model_dirs(model_dir)
    if model_name is None:
        pairs = [(d, read_card(d).name) for d in dirs]
    elif len(dirs) == 1:
        pairs = [(dirs[0], model_name)]
    else:
        names = ", ".join(d.name for d in dirs)
        raise ConfigError(
            f"--model_name {model_name!r} needs a path with exactly one model; {model_dir} holds "
            f"{len(dirs)} ({names}). Drop --model_name to serve them all under their own names."
        )
    seen: set[str] = set()
    for _, name in pairs:
        if name in seen:
            raise ConfigError(f"Two models in {model_dir} are named {name!r}; model names must be unique.")
        seen.add(name)
    return pairs


# --- one worker ---------------------------------------------------------------------------------


def run_worker(
    settings: ServeSettings,
    pairs: list[tuple[Path, str]],
    sock: socket.socket,
    on_ready: Callable[[list[dict[str, Any]]], None],
) -> int:
    """Load the models and serve HTTP (and gRPC) on ``sock`` until a signal; return 0."""
    import uvloop

    from pipeserve.serving._uvicorn import build_server
    from pipeserve.serving.dataplane import DataPlane, load_model
    from pipeserve.serving.metrics import Metrics
    from pipeserve.serving.rest import RestApp

    models = [load_model(d, name, settings.backend, settings.native_threads) for d, name in pairs]
    metrics = Metrics()
    for m in models:
        metrics.load_seconds.labels(m.name).set(m.load_seconds)
    dataplane = DataPlane(models, settings.inline_rows, metrics)
    app = RestApp(dataplane, metrics, settings.max_request_bytes, settings.access_log)
    server = build_server(app, dataplane, settings)
    # Imports and loaded models live as long as the process: keep them out of every GC pass,
    # which shortens the collector's pauses on the request path.
    gc.collect()
    gc.freeze()
    info = [
        {"name": m.name, "version": m.version, "platform": m.backend.platform, "load_seconds": m.load_seconds}
        for m in models
    ]

    async def main() -> None:
        if settings.grpc_port:
            from pipeserve.serving.grpc_server import start_grpc_server

            server.grpc = await start_grpc_server(
                dataplane, metrics, settings.host, settings.grpc_port, settings.max_request_bytes
            )
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started:
            on_ready(info)
        await task

    uvloop.run(main())
    return 0


# --- several workers ----------------------------------------------------------------------------


def _worker_main(settings: ServeSettings, pairs: list, sock: socket.socket, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM; ^C reaches all of us
    try:
        code = run_worker(settings, pairs, sock, lambda info: conn.send(("ready", info)))
    except PipeserveError as exc:
        conn.send(("error", exc.message, exc.exit_code))
        code = exc.exit_code
    except BaseException as exc:  # report anything, then die with it
        conn.send(("error", f"{type(exc).__name__}: {exc}", 1))
        raise
    os._exit(code)


class _Stopping:
    """Why the parent is stopping its workers: not yet, a signal it received, or a worker that died.

    A worker that dies on its own takes the others down and the server exits 1: the container
    exits and Kubernetes restarts it, rather than serving on with fewer workers than asked for.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.worker_died = False

    @property
    def started(self) -> bool:
        return self.signal is not None or self.worker_died


def _run_workers(settings: ServeSettings, pairs: list, sock: socket.socket, started: float) -> int:
    # Set before any worker imports prometheus_client (it picks its value class at import).
    metrics_dir = tempfile.mkdtemp(prefix="pipeserve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    ctx = multiprocessing.get_context("fork")
    workers: list[tuple[Any, Any]] = []
    stopping = _Stopping()

    def terminate_workers() -> None:
        for proc, _ in workers:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    def on_signal(sig: int, frame: Any) -> None:
        stopping.signal = sig
        terminate_workers()

    try:
        for _ in range(settings.workers):
            parent_conn, child_conn = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, args=(settings, pairs, sock, child_conn), daemon=False)
            proc.start()
            workers.append((proc, parent_conn))
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        info: list[dict[str, Any]] = []
        for _, conn in workers:
            message = conn.recv() if conn.poll(None) else ("error", "worker exited before it was ready", 1)
            if message[0] == "error":
                terminate_workers()
                error = ServerStartError(f"A worker failed to start: {message[1]}")
                error.exit_code = message[2]
                raise error
            info = message[1]
        _print_ready(settings, info, started)
        pending = {proc.sentinel: proc for proc, _ in workers}
        while pending:
            for sentinel in multiprocessing.connection.wait(list(pending)):
                proc = pending.pop(sentinel)
                proc.join()
                if not stopping.started:
                    log.error("Worker %d exited with code %s; stopping the others.", proc.pid, proc.exitcode)
                    stopping.worker_died = True
                    terminate_workers()
        codes = [proc.exitcode for proc, _ in workers]
        if stopping.worker_died:
            return 1
        if any(codes):
            log.error("Workers exited with codes %s", codes)
            return 1
        return 0
    except EOFError as exc:
        raise ServerStartError("A worker exited before it was ready; see the log above.") from exc
    finally:
        for proc, _ in workers:
            if proc.is_alive():
                proc.kill()
                proc.join()
        shutil.rmtree(metrics_dir, ignore_errors=True)
