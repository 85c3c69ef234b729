"""Benchmark plumbing: start servers and time their start-up, measure RSS, run wrk, parse its output.

Nothing here knows about pipeserve; :mod:`benchmarks.run` decides what to compare.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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
        ready_url: URL that answers 200 once the server can take requests.
        base_url: ``http://127.0.0.1:PORT``.
        log: File that receives the server's stdout and stderr.
    """

    name: str
    cmd: list[str]
    ready_url: str
    base_url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    startup_s: float | None = None
    idle_rss_mb: float | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Spawn the server and wait until ``ready_url`` answers 200; record the time it took."""
        env = {**os.environ, **self.env}
        out = self.log.open("wb")
        t0 = time.perf_counter()
        # Own process group, so stop() reaches workers the server forked.
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before it was ready; see {self.log}:\n{tail(self.log)}")
            if _http_ok(self.ready_url):
                self.startup_s = time.perf_counter() - t0
                return
            if time.perf_counter() - t0 > timeout:
                self.stop()
                raise BenchError(f"{self.name} was not ready within {timeout:.0f} s; see {self.log}:\n{tail(self.log)}")
            time.sleep(0.01)

    def rss_mb(self) -> float:
        """Resident memory of the server and all its descendants, in MiB."""
        if self.proc is None:
            return 0.0
        return sum(_rss_kb(pid) for pid in _tree(self.proc.pid)) / 1024

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group, then SIGKILL it after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


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


def run_wrk(url: str, body: Body, connections: int, duration: float, threads: int = 1, timeout_s: int = 30) -> WrkResult:
    """POST ``body`` to ``url`` with wrk for ``duration`` seconds (whole seconds, wrk's unit) over ``connections`` connections."""
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


def start_v2_server(name: str, cmd: list[str], http_port: int, log_dir: Path, timeout: float = 90) -> Server:
    """Start a v2 server (pipeserve, KServe, ...) on 127.0.0.1:http_port and wait for /v2/health/ready."""
    base = f"http://127.0.0.1:{http_port}"
    server = Server(name, cmd, f"{base}/v2/health/ready", base, log_dir / f"{name}.log")
    server.start(timeout=timeout)
    return server
