"""Helpers for the server tests: start the real `pipeserve serve` CLI on free loopback ports."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeserve.smoke import free_port, free_ports  # noqa: F401  (free_port is used by the tests)


@dataclass
class Server:
    """A running `pipeserve serve` subprocess."""

    proc: subprocess.Popen
    http_port: int
    grpc_port: int | None
    ready_line: str
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait, return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeserve.cli.main", *args]


def start_server(
    model_dir: Path, tmp_path: Path, *extra: str, grpc: bool = True, timeout: float = 60
) -> Server:
    """Start the real CLI on free ports and wait for its ready line."""
    http_port, grpc_port = free_ports(2)
    grpc_port = grpc_port if grpc else None
    args = ["serve", str(model_dir), "--http-port", str(http_port)]
    if grpc_port:
        args += ["--grpc-port", str(grpc_port)]
    args += list(extra)
    log_path = tmp_path / f"server-{http_port}.log"
    out = log_path.open("w")
    proc = subprocess.Popen(cli(*args), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text()
        for line in text.splitlines():
            if "ready in" in line:
                return Server(proc, http_port, grpc_port, line, log_path, args)
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before ready:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server not ready in {timeout}s:\n{log_path.read_text()}")
