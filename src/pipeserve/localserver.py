"""A server in a child process, for the smoke test of `pipeserve run`, the tests and the benchmarks.

:class:`LocalServer` starts `pipeserve serve` on any free port (``--http-port 0``, and ``--grpc-port
auto`` with ``grpc=True``) and reads the ports it bound from its ready line, so there is no window
between choosing a port and binding it. Any other server (KServe's ``ModelServer``, a baseline)
runs through :meth:`LocalServer.command`; it is ready when its readiness URL answers 200, so its
ports must be chosen beforehand (:func:`free_ports`).

Example::

    with LocalServer.serve("build/model", grpc=True) as server:
        Predictor(server.url, "iris").predict([[5.1, 3.5, 1.4, 0.2]])
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pipeserve.errors import PipeserveError

__all__ = ["LocalServer", "LocalServerError", "free_port", "free_ports"]

# pipeserve.serving.server._print_ready writes it: "... ready in 0.43s on http://H:P[, gRPC H:P]; workers: ..."
_READY_LINE = re.compile(r"^pipeserve serve: ready in \S+ on (?P<url>http://\S+?)(?:, gRPC (?P<grpc>\S+?))?; .*$",
                         re.MULTILINE)
_POLL_S = 0.02


class LocalServerError(PipeserveError):
    """The local server exited before it was ready, or was not ready in time."""


class LocalServer:
    """A server process: started, waited for, stopped by SIGTERM (then SIGKILL), its log kept.

    Build it with :meth:`serve` (`pipeserve serve`) or :meth:`command` (anything else). Use it as
    a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        argv: The command line.
        ready_url: Ready when this URL answers 200; None: when pipeserve's ready line appears
            (which also gives :attr:`url` and :attr:`grpc_url`).
        url: Base URL of a server with a ``ready_url``.
        log_path: File for the server's stdout and stderr (default: a temporary file, removed
            by :meth:`stop` after reading it).
        timeout: Seconds :meth:`start` waits for the server to be ready.
        env: Extra environment variables.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_url: str | None = None,
        url: str | None = None,
        log_path: Path | None = None,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.ready_url = ready_url
        self.url = url or ""
        self.grpc_url: str | None = None
        self.ready_line = ""
        self.timeout = timeout
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="pipeserve-server-", suffix=".log")[1])
        self._log_text: str | None = None  # kept when stop() removes a temporary log

    @classmethod
    def serve(
        cls, model_dir: str | Path, *args: str, grpc: bool = False, log_path: Path | None = None,
        timeout: float = 60.0, env: dict[str, str] | None = None,
    ) -> LocalServer:
        """`pipeserve serve MODEL_DIR ARGS...` on 127.0.0.1: any free HTTP port, and gRPC on any free port
        with ``grpc`` (ARGS may name other ports or host)."""
        argv = [sys.executable, "-m", "pipeserve.cli.main", "serve", str(model_dir), "--host", "127.0.0.1",
                "--http-port", "0", *(["--grpc-port", "auto"] if grpc else []), *args]
        return cls(argv, log_path=log_path, timeout=timeout, env=env)

    @classmethod
    def command(
        cls, argv: Sequence[str], ready_url: str, *, log_path: Path | None = None, timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> LocalServer:
        """Any server: ready when ``ready_url`` answers 200; :attr:`url` is that URL's scheme and host."""
        base = re.match(r"^\w+://[^/]+", ready_url)
        url = base.group(0) if base else ready_url
        return cls(argv, ready_url=ready_url, url=url, log_path=log_path, timeout=timeout, env=env)

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalServer:
        """Spawn the server and wait until it is ready; record how long that took.

        Raises:
            LocalServerError: The server exited first, or was not ready within ``timeout`` (it
                is then stopped); the message ends with the tail of its log.
        """
        t0 = time.perf_counter()
        with self.log_path.open("wb") as out:
            # Its own session, so stop() can reach processes it forked (--workers N).
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        while not self._is_ready():
            exited = self.proc.poll() is not None
            if exited or time.perf_counter() - t0 > self.timeout:
                self.stop()
                if exited:
                    raise LocalServerError(f"`{self.shown}` exited with code {self.proc.returncode}: {self.tail()}")
                raise LocalServerError(
                    f"`{self.shown}` was not ready within {self.timeout:g} s; its log ends with:\n{self.tail()}"
                )
            time.sleep(_POLL_S)
        self.startup_s = time.perf_counter() - t0
        return self

    def _is_ready(self) -> bool:
        if self.ready_url is not None:
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, OSError):
                return False
        match = _READY_LINE.search(self.log())
        if match is None:
            return False
        self.ready_line = match.group(0)
        self.url = match.group("url")
        self.grpc_url = match.group("grpc")
        return True

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the server, wait up to ``timeout`` seconds, then SIGKILL its whole session.

        Returns:
            Its exit code (None when it was never started); after a SIGKILL, the negative signal.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_session()
                self.proc.wait(10)
        if self._own_log and self._log_text is None:
            self._log_text = self.log()
            self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def _kill_session(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- what it says -----------------------------------------------------------------------------

    @property
    def shown(self) -> str:
        """The command line, short: ``pipeserve serve …`` rather than the interpreter's path."""
        if self.argv[1:3] == ["-m", "pipeserve.cli.main"]:
            return " ".join(["pipeserve", *self.argv[3:]])
        return " ".join([Path(self.argv[0]).name, *self.argv[1:]])

    @property
    def http_port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def grpc_port(self) -> int | None:
        return int(self.grpc_url.rsplit(":", 1)[1]) if self.grpc_url else None

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the HTTP listener (what tritonclient takes)."""
        return self.url.split("://", 1)[1]

    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        if self._log_text is not None:
            return self._log_text
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log().strip().splitlines()[-lines:])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1, never 8080 (kubectl's fallback address).

    For servers that need their ports on the command line (pipeserve itself takes 0), and for
    an address nothing listens on. The sockets stay open until all ports are chosen, so the ports
    differ from each other; another program may take one before it is used.
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
