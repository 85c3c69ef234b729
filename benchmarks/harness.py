"""Benchmark plumbing: start servers and time their start-up, measure RSS, run wrk, parse its output.

Nothing here knows about pipeserve; :mod:`benchmarks.run` decides what to compare. Servers run
through :class:`pipeserve.localserver.LocalServer`, the one way the project starts a local server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pipeserve.localserver import LocalServer, LocalServerError

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"
APPS_DIR = Path(__file__).resolve().parent / "apps"
_BENCH_LINE = re.compile(r"^BENCH_JSON (\{.*\})\s*$", re.MULTILINE)


class BenchError(RuntimeError):
    """A server did not start, or wrk failed."""


@dataclass
class Server:
    """One server process under test.

    Args:
        name: Short id used in the results table.
        cmd: Command line that starts it in the foreground.
        ready_url: URL that answers 200 once the server can take requests; None for `pipeserve
            serve`, which prints a ready line naming the port it bound (``--http-port 0``).
        log: File that receives the server's stdout and stderr.
        env: Extra environment variables.
    """

    name: str
    cmd: list[str]
    ready_url: str | None
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    local: LocalServer | None = None
    idle_rss_mb: float | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (known once started)."""
        return self.local.url if self.local else ""

    @property
    def startup_s(self) -> float | None:
        """Seconds from spawn to ready."""
        return self.local.startup_s if self.local else None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.local.proc if self.local else None

    def start(self, timeout: float = 90.0) -> None:
        """Spawn the server and wait until it is ready; record how long that took."""
        if self.ready_url is None:
            self.local = LocalServer(self.cmd, log_path=self.log, timeout=timeout, env=self.env)
        else:
            self.local = LocalServer.command(self.cmd, self.ready_url, log_path=self.log, timeout=timeout, env=self.env)
        try:
            self.local.start()
        except LocalServerError as exc:
            raise BenchError(f"{self.name}: {exc}") from exc

    def rss_mb(self) -> float:
        """Resident memory of the server and all its descendants, in MiB."""
        if self.proc is None:
            return 0.0
        return sum(_rss_kb(pid) for pid in _tree(self.proc.pid)) / 1024

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server, then SIGKILL its process group after ``grace`` seconds."""
        if self.local is not None:
            self.local.stop(timeout=grace)


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(p) for p in task.read_text().split()]
            except OSError:
                pass
    return pids


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Body:
    """A request body on disk and the headers that go with it."""

    path: Path
    content_type: str = "application/json"
    header_length: int | None = None  # Inference-Header-Content-Length for v2 binary bodies


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured (latencies in microseconds)."""

    requests: int
    duration_us: int
    errors: int
    p50_us: int
    p99_us: int
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


def parse_wrk(stdout: str) -> WrkResult:
    """Parse the ``BENCH_JSON`` line that wrk/post.lua's ``done`` prints.

    Raises:
        BenchError: No such line (wrk failed, or the script was not used).
    """
    match = _BENCH_LINE.search(stdout)
    if not match:
        raise BenchError(f"wrk printed no BENCH_JSON summary line:\n{stdout[-2000:]}")
    raw = json.loads(match.group(1))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return WrkResult(
        requests=raw["requests"],
        duration_us=raw["duration_us"],
        errors=errors,
        p50_us=raw["p50_us"],
        p99_us=raw["p99_us"],
        mean_us=raw["mean_us"],
    )


def run_wrk(
    url: str, body: Body, connections: int, duration: float, threads: int = 1, timeout_s: int = 30
) -> WrkResult:
    """POST ``body`` to ``url`` with wrk for ``duration`` whole seconds (its unit) over ``connections`` connections."""
    env = {**os.environ, "BENCH_BODY": str(body.path), "BENCH_CONTENT_TYPE": body.content_type,
           "BENCH_HEADER_LENGTH": "" if body.header_length is None else str(body.header_length)}
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           f"--timeout={timeout_s}s", "-s", str(LUA_SCRIPT), url]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}")
    return parse_wrk(proc.stdout)


def wrk_version() -> str:
    proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (proc.stdout + proc.stderr).splitlines()[0].split(" Copyright")[0].strip()
