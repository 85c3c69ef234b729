"""Run the pipeline on this machine with ``kfp.local``: the same steps as on Kubeflow Pipelines.

``kfp.local.SubprocessRunner(use_venv=False)`` runs each step as a subprocess of the current
interpreter, which already has pipeserve and its dependencies: the steps are built for
:meth:`ComponentRuntime.local`, so they pip-install nothing and embed no library; load_data hands
a copy of the installed pipeserve to the other steps as its library artifact, as the compiled
pipeline hands on the library load_data carries (:mod:`pipeserve.components.runtime`). KFP's own
logs are verbose (every executor input is dumped), so they go to a log file and the terminal gets
one line per step.

kfp.local 2.17.3 resolves a ``dsl.OneOf`` of parameters but not of artifacts (a condition group's
output with two artifact selectors raises "Expected 1 artifact in ArtifactSelectorSpec"); the
pipeline picks its model from whichever branch trained it that way, so the run patches that one
resolver for its duration (:func:`_artifact_one_of`) with the rule KFP applies to parameters.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
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
class Registration:
    """What the register, gate and promote steps did (a run with a registry).

    Args:
        version: The version the registry assigned.
        storage_uri: The storageUri the manifest would carry (the registry's, when KServe can fetch it).
        decision: ``promote`` or ``hold back``.
        passed: Whether the gate passed.
        summary: The verdict in one line.
        champion_before: The champion the gate compared with (None: none yet).
        promotion: The alias move, when promoted (``iris@champion: 1 -> 2``).
        gate_report: The gate's Markdown (both metric sets, the rule, the verdict).
    """

    version: str
    storage_uri: str
    decision: str
    passed: bool
    summary: str
    champion_before: str | None
    promotion: str | None
    gate_report: Path | None


@dataclass(frozen=True)
class Search:
    """What the hyperparameter fan-out did (a run with a grid).

    Args:
        scores: Every candidate's cross-validated score, in grid order.
        chosen: The chosen hyperparameters (trained on the whole training split).
        report: The Markdown table of every candidate.
    """

    scores: list[Any]
    chosen: dict[str, Any]
    report: Path | None


@dataclass(frozen=True)
class RunResult:
    """Where a successful local run put its results.

    ``manifest`` is None when the gate held the model back (no InferenceService is emitted);
    ``registration`` is None without a registry, ``search`` None without a grid.
    """

    card: ModelCard
    model_dir: Path
    repository: Path
    manifest: Path | None
    metrics: dict[str, float]
    log: Path
    seconds: float
    step_seconds: dict[str, float]
    test_data: Path
    registration: Registration | None = None
    search: Search | None = None
    step_counts: dict[str, int] = field(default_factory=dict)
    deployed: str | None = None  # the deploy step's one line (None: no deploy step ran)


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
    from pipeserve.pipelines.train_and_serve import GRID_PARALLELISM, train_and_serve_pipeline

    output = options.output.resolve()
    kfp_root, logs = output / "kfp", output / "logs"
    shutil.rmtree(kfp_root, ignore_errors=True)  # scratch space: only the latest run is kept
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "pipeline.log"

    events: list[tuple[float, str, str]] = []  # (time, task, "start" | "end")
    running: dict[str, list[float]] = {}  # a ParallelFor runs one task name several times at once
    current: list[str] = []

    def on_line(line: str) -> None:
        now = time.perf_counter()
        if m := _STARTED.search(line):
            events.append((now, m.group(1), "start"))
            running.setdefault(m.group(1), []).append(now)
            current[:] = [m.group(1)]
            progress.write(f"  {m.group(1):<24} running …\n")
        elif m := _FINISHED.search(line):
            events.append((now, m.group(1), "end"))
            start = (running.get(m.group(1)) or [now]).pop(0)
            status = "ok" if m.group(2) == "SUCCESS" else m.group(2).lower()
            progress.write(f"  {m.group(1):<24} {status} ({now - start:.1f} s)\n")
        progress.flush()

    parallelism = max(1, min(GRID_PARALLELISM, os.cpu_count() or 1))
    train_and_serve = train_and_serve_pipeline(build_components(ComponentRuntime.local()), parallelism,
                                               on_cluster=False)
    t0 = time.perf_counter()
    with log_path.open("w") as log, _artifact_one_of(), _kfp_local_globals(), warnings.catch_warnings():
        # The best grid candidate's train step has a display name for the KFP UI; kfp.local says it ignores it.
        warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner", category=UserWarning)
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
    step_seconds, counts = _step_times(events, t0 + seconds)
    return _collect(task, output, log_path, seconds, step_seconds, counts)


def _step_times(events: list[tuple[float, str, str]], finish: float) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and runs per task, from kfp.local's start/finish log lines.

    A task that ran several times (the grid's candidates, in parallel) counts from its first start
    to its last end. kfp.local drops some finish lines of parallel iterations (each one resets the
    root logger when it ends), so a task with fewer ends than starts ends where the next task starts.
    """
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in dict.fromkeys(task for _, task, _ in events):
        starts = [t for t, task, kind in events if task == name and kind == "start"]
        ends = [t for t, task, kind in events if task == name and kind == "end"]
        if not starts:
            continue
        end = max(ends, default=starts[-1])
        if len(ends) < len(starts):
            end = min((t for t, task, kind in events if task != name and kind == "start" and t > starts[-1]),
                      default=finish)
        seconds[name], counts[name] = end - starts[0], len(starts)
    return seconds, counts


@contextlib.contextmanager
def _kfp_local_globals() -> Iterator[None]:
    """Put back what kfp.local changes in the process: ``builtins.print`` and the root logger.

    Each task swaps ``builtins.print`` for an indenting one and the root logger's handlers and
    level for its own, and puts back what it found on exit. Parallel iterations (the grid's
    candidates, in threads) interleave those swaps, so the last one can leave an indenting print
    and a handler writing to this run's closed log behind, for whatever the process does next.
    """
    import logging

    root = logging.getLogger()
    printer, handlers, level = builtins.print, root.handlers[:], root.level
    try:
        yield
    finally:
        builtins.print = printer
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _artifact_one_of() -> Iterator[None]:
    """Let kfp.local resolve a ``dsl.OneOf`` of artifacts (it resolves only parameters ones), for the run.

    The rule is the one kfp.local applies to parameters: of a condition group's candidate outputs,
    exactly one branch must have produced its artifact.
    """
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    original = OrchestratorUtils.__dict__["get_dag_output_artifacts"]

    def get_dag_output_artifacts(cls: Any, dag_outputs_spec: Any, io_store: Any) -> dict[str, Any]:
        outputs = {}
        for key, spec in dag_outputs_spec.artifacts.items():
            found = []
            for selector in spec.artifact_selectors:
                try:
                    found.append(io_store.get_task_output(selector.producer_subtask, selector.output_artifact_key))
                except (KeyError, ValueError):  # that branch did not run
                    continue
            if len(found) != 1:
                raise ValueError(f"Expected exactly one branch to produce the artifact {key!r}, got {len(found)}.")
            outputs[key] = found[0]
        return outputs

    OrchestratorUtils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)
    try:
        yield
    finally:
        OrchestratorUtils.get_dag_output_artifacts = original


def _collect(task: Any, output: Path, log_path: Path, seconds: float, steps: dict[str, float],
             counts: dict[str, int]) -> RunResult:
    packaged = Path(task.outputs["packaged_model"].path)
    run_dir = packaged.parent.parent
    registered = run_dir / "register" / "registered_model"  # the version as the registry stamped it
    repository = output / "model"
    shutil.rmtree(repository, ignore_errors=True)
    shutil.copytree(registered if registered.is_dir() else packaged, repository)
    card_dir = next(p.parent for p in repository.glob("*/model-card.json"))
    card = read_card(card_dir)
    (output / "metrics.json").write_text(json.dumps(card.metrics, indent=2, sort_keys=True) + "\n")
    markdown = run_dir / "evaluate" / "model_card"
    if markdown.is_file():
        shutil.copyfile(markdown, output / "model-card.md")
    emitted = sorted(run_dir.glob("emit-inference-service*/manifest"))
    manifest: Path | None = output / "inferenceservice.yaml"
    if emitted:
        shutil.copyfile(emitted[0], manifest)
    else:  # held back by the gate: no manifest, and none left over from an earlier run
        manifest.unlink(missing_ok=True)
        manifest = None
    deployed = [d for d in sorted(run_dir.glob("deploy*")) if _outputs(d)]  # deploy, or deploy-2 under a registry
    _copied(deployed[0] / "report" if deployed else run_dir / "deploy" / "report", output / "deploy.md")
    return RunResult(card, card_dir, repository, manifest, card.metrics, log_path, seconds, steps,
                     run_dir / "load-data" / "test_data", _registration(run_dir, output), _search(run_dir, output),
                     counts, _outputs(deployed[0]).get("Output") if deployed else None)


def _outputs(task_dir: Path) -> dict[str, Any]:
    """A finished step's parameter outputs and artifact metadata (kfp.local's executor_output.json)."""
    path = task_dir / "executor_output.json"
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    out: dict[str, Any] = dict(raw.get("parameterValues") or {})
    for name, entry in (raw.get("artifacts") or {}).items():
        out[name] = (entry.get("artifacts") or [{}])[0].get("metadata", {})
    return out


def _copied(src: Path, dest: Path) -> Path | None:
    dest.unlink(missing_ok=True)
    if not src.is_file():
        return None
    shutil.copyfile(src, dest)
    return dest


def _registration(run_dir: Path, output: Path) -> Registration | None:
    report = _copied(run_dir / "gate" / "decision", output / "gate.md")
    registered = _outputs(run_dir / "register")
    if not registered:
        return None
    gate = _outputs(run_dir / "gate").get("decision", {})
    promoted = _outputs(run_dir / "promote").get("Output")
    return Registration(str(registered["version"]), str(registered.get("storage_uri", "")),
                        str(gate.get("decision", "")), bool(gate.get("passed")), str(gate.get("summary", "")),
                        str(gate.get("champion_version") or "") or None, promoted, report)


def _search(run_dir: Path, output: Path) -> Search | None:
    from pipeserve.tuning import CVScore

    report = _copied(run_dir / "select-candidate" / "search", output / "search.md")
    chosen = _outputs(run_dir / "select-candidate").get("Output")
    if chosen is None:
        return None
    scores = [CVScore.from_json(_outputs(d)["Output"]) for d in run_dir.glob("for-loop-*-iteration-*/score-candidate")]
    return Search(sorted(scores, key=lambda s: s.index), json.loads(chosen), report)
