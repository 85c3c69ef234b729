"""Smoke inference: start `pipeserve serve` on a free loopback port, infer, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with Predictor(url, model, timeout=5.0) as predictor:
            while not _ready(predictor):
                if proc.poll() is not None:
                    raise SmokeTestFailed(f"`{' '.join(cmd[2:])}` exited with code {proc.returncode}: "
                                          f"{(proc.stdout.read() if proc.stdout else '').strip()[-500:]}")
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


def _ready(predictor: Any) -> bool:
    try:
        return bool(predictor.ready())
    except PipeserveError:
        return False
