"""Smoke inference: start `pipeserve serve` on a free loopback port, infer, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeserve.errors import PipeserveError


class SmokeTestFailed(PipeserveError):
    """The local server did not start or did not answer the smoke request."""


@dataclass(frozen=True)
class SmokeResult:
    url: str
    model: str
    rows: int
    outputs: dict[str, Any]
    seconds: float


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1, never 8080 (kubectl's fallback address).

    The sockets stay open until all ports are chosen, so the ports differ from each other.
    """
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] == 8080:
                sock.close()
                continue
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One free TCP port on 127.0.0.1 (never 8080)."""
    return free_ports(1)[0]


def smoke_inference(repository: Path, model: str, rows: np.ndarray, timeout: float = 30.0) -> SmokeResult:
    """Serve ``repository`` in a child process, send ``rows`` to ``model`` over REST v2, stop the server.

    Raises:
        SmokeTestFailed: The server exited, was not ready within ``timeout`` or the request failed.
    """
    from pipeserve.client import Predictor

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "pipeserve.cli.main", "serve", str(repository), "--http-port", str(port),
           "--log-level", "warning"]
    t0 = time.perf_counter()
    # The server's output goes to a file: an unread pipe could fill up and block the server.
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with Predictor(url, model, timeout=5.0) as predictor:
            while not predictor.ready():
                if proc.poll() is not None:
                    log.seek(0)
                    raise SmokeTestFailed(f"`{' '.join(cmd[3:])}` exited with code {proc.returncode}: "
                                          f"{log.read().strip()[-500:]}")
                if time.perf_counter() - t0 > timeout:
                    raise SmokeTestFailed(f"the local server was not ready within {timeout:.0f} s at {url}")
                time.sleep(0.1)
            try:
                outputs = predictor.infer(rows)
            except PipeserveError as exc:
                raise SmokeTestFailed(f"smoke request to {url} failed: {exc}") from exc
        return SmokeResult(url, model, len(rows), {k: v.tolist() for k, v in outputs.items()},
                           time.perf_counter() - t0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
