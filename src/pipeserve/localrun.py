"""Run the pipeline on this machine with ``kfp.local``: the same steps as on Kubeflow Pipelines.

``kfp.local.SubprocessRunner(use_venv=False)`` runs each step as a subprocess of the current
interpreter, which already has pipeserve and its dependencies: the steps are built for
:meth:`ComponentRuntime.local`, so they neither pip-install anything nor unpack an embedded copy
of the library (that is how the compiled pipeline ships to a stock image; see
:mod:`pipeserve.compiler`). KFP's own logs are verbose (every executor input is dumped), so they go
to a log file and the terminal gets one line per step.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pipeserve import errors
from pipeserve.modelcard import ModelCard, read_card

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# The last line of a Python traceback: "pipeserve.kube.kserve.DeploymentConfigError: message"
# (the class's module is left out for builtins).
_EXCEPTION_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*): (.+)$")


@dataclass(frozen=True)
class RunOptions:
    """Options of one local pipeline run (the pipeline's parameters plus where to write).

    Args:
        output: Folder for the results: ``model/`` (repository), ``inferenceservice.yaml``,
            ``metrics.json``, ``model-card.md``, ``kfp/`` (KFP's artifacts), ``logs/pipeline.log``.
        arguments: Pipeline parameters (see pipelines/train_and_serve.py).
        verbose: Also stream KFP's full logs to the terminal.
    """

    output: Path
    arguments: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False


@dataclass(frozen=True)
class RunResult:
    """Where a successful local run put its results."""

    card: ModelCard
    model_dir: Path
    repository: Path
    manifest: Path
    metrics: dict[str, float]
    log: Path
    seconds: float
    step_seconds: dict[str, float]
    test_data: Path


class _ProgressTee(io.TextIOBase):
    """A stdout stand-in: everything goes to the log; task start/finish lines become progress."""

    def __init__(self, log: TextIO, on_line: Callable[[str], None], echo: TextIO | None) -> None:
        self._log, self._on_line, self._echo, self._buf = log, on_line, echo, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        if self._echo is not None:
            self._echo.write(text)
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._on_line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self._log.flush()


class PipelineFailed(errors.PipeserveError):
    """A pipeline step failed; exit code follows the step's own error (2 for bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _exception_class(name: str) -> type[BaseException] | None:
    """The exception class a traceback line names: a builtin, or a class of any pipeserve module."""
    module, _, attr = name.rpartition(".")
    found = None
    if not module:
        found = getattr(builtins, name, None)
    elif module == "pipeserve" or module.startswith("pipeserve."):
        try:
            found = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            found = None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _failure_message(log_path: Path, task: str | None) -> tuple[str, int]:
    """The last exception line in the log, and the exit code its class carries.

    The step runs in another process, so its exception arrives as a traceback in the log; the
    class is found again from its qualified name, wherever in pipeserve it is defined (e.g.
    ``kube.kserve.DeploymentConfigError``, a ConfigError: exit code 2).
    """
    last: tuple[str, str] | None = None
    for line in _ANSI.sub("", log_path.read_text(errors="replace")).splitlines():
        match = _EXCEPTION_LINE.match(line)
        if match and (_exception_class(match.group(1)) or match.group(1).endswith(("Error", "Exception"))):
            last = (match.group(1), match.group(2))
    where = f"step {task!r} failed" if task else "the pipeline failed"
    if last is None:
        return f"{where}; see {log_path}", 1
    cls = _exception_class(last[0])
    code = cls.exit_code if cls is not None and issubclass(cls, errors.PipeserveError) else 1
    return f"{where}: {last[1]} (full log: {log_path})", code


def run_pipeline(options: RunOptions, progress: TextIO = sys.stderr) -> RunResult:
    """Run train_and_serve locally and collect its results under ``options.output``.

    Raises:
        PipelineFailed: A step failed; the message is that step's error and the log's path.
    """
    from kfp import local

    from pipeserve.components import ComponentRuntime, build_components
    from pipeserve.pipelines.train_and_serve import train_and_serve_pipeline

    output = options.output.resolve()
    kfp_root, logs = output / "kfp", output / "logs"
    shutil.rmtree(kfp_root, ignore_errors=True)  # scratch space: only the latest run is kept
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "pipeline.log"

    started: dict[str, float] = {}
    step_seconds: dict[str, float] = {}
    current: list[str] = []

    def on_line(line: str) -> None:
        if m := _STARTED.search(line):
            started[m.group(1)] = time.perf_counter()
            current[:] = [m.group(1)]
            progress.write(f"  {m.group(1):<24} running …\n")
        elif m := _FINISHED.search(line):
            step_seconds[m.group(1)] = time.perf_counter() - started.get(m.group(1), time.perf_counter())
            status = "ok" if m.group(2) == "SUCCESS" else m.group(2).lower()
            progress.write(f"  {m.group(1):<24} {status} ({step_seconds[m.group(1)]:.1f} s)\n")
        progress.flush()

    train_and_serve = train_and_serve_pipeline(build_components(ComponentRuntime.local()))
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        tee = _ProgressTee(log, on_line, sys.__stdout__ if options.verbose else None)
        with contextlib.redirect_stdout(tee):  # type: ignore[type-var]
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(kfp_root),
                       raise_on_error=True)
            try:
                task = train_and_serve(**options.arguments)
            except RuntimeError as exc:
                tee.flush()
                message, code = _failure_message(log_path, current[0] if current else None)
                raise PipelineFailed(message, code) from exc
    seconds = time.perf_counter() - t0
    return _collect(task, output, log_path, seconds, step_seconds)


def _collect(task: Any, output: Path, log_path: Path, seconds: float, steps: dict[str, float]) -> RunResult:
    packaged = Path(task.outputs["packaged_model"].path)
    repository = output / "model"
    shutil.rmtree(repository, ignore_errors=True)
    shutil.copytree(packaged, repository)
    manifest = output / "inferenceservice.yaml"
    shutil.copyfile(task.outputs["inference_service"].path, manifest)
    card_dir = next(p.parent for p in repository.glob("*/model-card.json"))
    card = read_card(card_dir)
    (output / "metrics.json").write_text(json.dumps(card.metrics, indent=2, sort_keys=True) + "\n")
    run_dir = packaged.parent.parent
    markdown = run_dir / "evaluate" / "model_card"
    if markdown.is_file():
        shutil.copyfile(markdown, output / "model-card.md")
    return RunResult(card, card_dir, repository, manifest, card.metrics, log_path, seconds, steps,
                     run_dir / "load-data" / "test_data")
