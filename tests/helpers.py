"""The two ways tests run the `pipeserve` command line: in-process, or as a child process.

Import it as ``from helpers import run_cli`` (pytest puts tests/ on sys.path).
Use :func:`run_cli` (fast, debuggable, counted by coverage) unless the test is about what only a
real process shows (signals, exit on SIGTERM, workers, stdout buffering), then :func:`spawn_cli`.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeserve.cli.main import main


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one CLI call."""

    code: int
    out: str
    err: str


def run_cli(*argv: str, cwd: Path | None = None) -> CliResult:
    """Run ``pipeserve ARGV...`` in this process and capture what it prints."""
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        os.chdir(cwd or before)  # contextlib.chdir is 3.11+
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse exits for --help and usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(before)
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_command(*argv: str) -> list[str]:
    """The argv of ``pipeserve ARGV...`` run by this interpreter (what :func:`spawn_cli` starts)."""
    return [sys.executable, "-m", "pipeserve.cli.main", *argv]


def spawn_cli(*argv: str, timeout: float = 300, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``pipeserve ARGV...`` as a child process, wait for it and capture its output."""
    return subprocess.run(cli_command(*argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
