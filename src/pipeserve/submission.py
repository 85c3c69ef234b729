"""Submit the pipeline to a Kubeflow Pipelines API server, once or on a schedule, through ``kfp.Client``.

What users of the KFP SDK do by hand, in one call: compile the pipeline (or take a compiled
package), upload it as a pipeline or as a new version of the existing one (the same package is
not uploaded twice), find or create the experiment, and create a run or a recurring run. Errors
become pipeserve errors: the server refusing a request is bad input (exit 2, its message
verbatim), an unreachable server is exit 1.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeserve.errors import ConfigError, PipeserveError, UserError

DEFAULT_EXPERIMENT = "pipeserve"
# KFP's scheduled workflows take six cron fields, seconds first (robfig/cron with seconds).
CRON_FIELDS = 6
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


class KfpUnreachable(PipeserveError):
    """The Kubeflow Pipelines API server did not answer (exit 1)."""


class KfpRefused(UserError):
    """The Kubeflow Pipelines API server refused the request (exit 2: what was sent must change)."""


@dataclass(frozen=True)
class Connection:
    """How to reach the KFP API server: the options of ``kfp.Client``.

    Args:
        host: API server URL, e.g. ``http://127.0.0.1:8888`` or a KFP UI URL behind a gateway.
        namespace: Kubeflow profile namespace (multi-user KFP); None for standalone KFP.
        existing_token: A bearer token (otherwise kfp reads ``KF_PIPELINES_SA_TOKEN_PATH`` in a pod).
        cookies: Cookies for an authenticating proxy, e.g. ``authservice_session=...``.
        ssl_ca_cert: CA bundle for an HTTPS host.
        ui_host: Where the UI is, for the printed links (default: ``host``).
    """

    host: str
    namespace: str | None = None
    existing_token: str | None = None
    cookies: str | None = None
    ssl_ca_cert: str | None = None
    ui_host: str | None = None

    def client(self) -> Any:
        import warnings

        import kfp

        with warnings.catch_warnings():  # "This client only works with KFP v2.0.0-beta.2 and later": we know
            warnings.simplefilter("ignore", FutureWarning)
            # kfp.Client's namespace only locates an in-cluster API; profiles are passed per call.
            return kfp.Client(host=self.host, namespace=self.namespace or "kubeflow",
                              existing_token=self.existing_token, cookies=self.cookies, ssl_ca_cert=self.ssl_ca_cert,
                              ui_host=self.ui_host)

    def run_link(self, run_id: str) -> str:
        return f"{(self.ui_host or self.host).rstrip('/')}/#/runs/details/{run_id}"

    def recurring_run_link(self, recurring_run_id: str) -> str:
        return f"{(self.ui_host or self.host).rstrip('/')}/#/recurringrun/details/{recurring_run_id}"


@dataclass(frozen=True)
class Submission:
    """What to run: the package, where it goes, and the pipeline's arguments.

    Args:
        package: A compiled pipeline YAML; None compiles pipeserve's pipeline first.
        pipeline_name: Name of the pipeline in KFP.
        experiment: Experiment the run belongs to (created when missing).
        run_name: Name of the run (default: pipeline name and time).
        arguments: Pipeline parameters.
        service_account: Kubernetes ServiceAccount the run's pods use (default: the server's).
    """

    package: Path | None = None
    pipeline_name: str = "train-and-serve"
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    service_account: str | None = None


@dataclass(frozen=True)
class Submitted:
    """What the server created."""

    kind: str  # "run" or "recurring run"
    id: str
    name: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    link: str
    state: str | None = None


def check_cron(expression: str) -> str:
    """Refuse a cron expression KFP's scheduler would not take (it wants 6 fields, seconds first).

    Raises:
        ConfigError: wrong number of fields, with the 6-field form of a 5-field expression.
    """
    fields = expression.split()
    if len(fields) == CRON_FIELDS:
        return expression
    hint = f" (for the 5-field `{expression}` that is `0 {expression}`)" if len(fields) == 5 else ""
    raise ConfigError(
        f"KFP's cron takes 6 fields, seconds first (e.g. `0 0 3 * * *` for 03:00 every day); got {len(fields)} "
        f"in {expression!r}{hint}."
    )


def submit(connection: Connection, what: Submission, *, wait: bool = False, timeout_s: float = 3600,
           progress: Callable[[str], None] = lambda _: None) -> Submitted:
    """Upload (or version) the pipeline and create one run; optionally wait for it to finish.

    Raises:
        KfpUnreachable: the API server did not answer.
        KfpRefused: it refused the pipeline or the run (its message).
        PipeserveError: ``wait`` and the run did not finish in time, or failed.
    """
    client, pipeline_id, version_id, experiment_id, arguments = _prepare(connection, what, progress)
    name = what.run_name or f"{what.pipeline_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    run = _call(lambda: client.run_pipeline(experiment_id, name, params=arguments, pipeline_id=pipeline_id,
                                            version_id=version_id, service_account=what.service_account),
                connection, "create the run")
    submitted = Submitted("run", run.run_id, name, pipeline_id, version_id, experiment_id,
                          connection.run_link(run.run_id), run.state)
    progress(f"run {run.run_id} created ({run.state or 'PENDING'}): {submitted.link}")
    if wait:
        state = _wait(client, connection, run.run_id, timeout_s, progress)
        submitted = Submitted(**{**submitted.__dict__, "state": state})
        if state != "SUCCEEDED":
            raise PipeserveError(f"Run {run.run_id} ended {state}; see {submitted.link}")
    return submitted


def schedule(connection: Connection, what: Submission, cron: str, *, max_concurrency: int = 1,
             catchup: bool = False, progress: Callable[[str], None] = lambda _: None) -> Submitted:
    """Upload (or version) the pipeline and create a recurring run on ``cron`` (6 fields, seconds first).

    Raises:
        ConfigError: a bad cron expression or concurrency.
        KfpUnreachable: the API server did not answer.
        KfpRefused: it refused the pipeline or the recurring run (its message).
    """
    check_cron(cron)
    if max_concurrency < 1:
        raise ConfigError(f"--max-concurrency must be at least 1; got {max_concurrency}.")
    client, pipeline_id, version_id, experiment_id, arguments = _prepare(connection, what, progress)
    name = what.run_name or f"{what.pipeline_name} on {cron}"
    job = _call(lambda: client.create_recurring_run(
        experiment_id, name, cron_expression=cron, max_concurrency=max_concurrency, no_catchup=not catchup,
        params=arguments, pipeline_id=pipeline_id, version_id=version_id, enabled=True,
        service_account=what.service_account), connection, "create the recurring run")
    submitted = Submitted("recurring run", job.recurring_run_id, name, pipeline_id, version_id, experiment_id,
                          connection.recurring_run_link(job.recurring_run_id), getattr(job, "status", None))
    progress(f"recurring run {job.recurring_run_id} created ({cron}): {submitted.link}")
    return submitted


def typed_arguments(package: Path, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` as the pipeline's parameter types want them (text from a command line becomes a number,
    a boolean or JSON where the parameter is one).

    Raises:
        ConfigError: an unknown parameter, or a value that is not of its type.
    """
    import json

    import yaml

    with package.open() as fh:
        spec = next(d for d in yaml.safe_load_all(fh) if d and "root" in d)
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in declared:
            raise ConfigError(f"The pipeline has no parameter {name!r}; it has: {', '.join(sorted(declared))}.")
        kind = declared[name]["parameterType"]
        if kind == "STRING" or not isinstance(value, str):
            out[name] = value
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        wanted = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": (int, float), "BOOLEAN": bool, "LIST": list,
                  "STRUCT": dict}.get(kind, object)
        if not isinstance(parsed, wanted) or (kind == "NUMBER_INTEGER" and isinstance(parsed, bool)):
            raise ConfigError(f"Pipeline parameter {name} is {kind.lower().replace('_', ' ')}; got {value!r}.")
        out[name] = parsed
    return out


def package_digest(package: Path) -> str:
    """Twelve hex digits naming what a pipeline package holds, the same for every compile of it.

    KFP stamps the compile time into each archive it embeds, so the file's own bytes change on
    every compile; :func:`pipeserve.compiler.normalize_compiled` digests the archives' files instead.
    """
    from pipeserve.compiler import normalize_compiled

    return hashlib.sha256(normalize_compiled(package.read_text()).encode()).hexdigest()[:12]


def _prepare(connection: Connection, what: Submission,
             progress: Callable[[str], None]) -> tuple[Any, str, str, str, dict[str, Any]]:
    client = _call(connection.client, connection, "connect")
    with tempfile.TemporaryDirectory(prefix="pipeserve-submit-") as tmp:
        package = what.package or _compile(Path(tmp) / "pipeline.yaml", progress)
        if not package.is_file():
            raise ConfigError(f"Pipeline package {package} does not exist; run `pipeserve compile` or drop --package.")
        arguments = typed_arguments(package, what.arguments)
        pipeline_id = _call(lambda: client.get_pipeline_id(what.pipeline_name), connection, "look up the pipeline")
        if pipeline_id is None:
            pipeline = _call(lambda: client.upload_pipeline(str(package), what.pipeline_name), connection,
                             "upload the pipeline")
            pipeline_id = pipeline.pipeline_id
            progress(f"uploaded pipeline {what.pipeline_name} ({pipeline_id})")
        version_name = f"{what.pipeline_name}-{package_digest(package)}"  # the same pipeline, the same version
        version_id = _find_version(client, connection, pipeline_id, version_name)
        if version_id is None:
            version = _call(lambda: client.upload_pipeline_version(str(package), version_name,
                                                                   pipeline_id=pipeline_id),
                            connection, "upload the pipeline version")
            version_id = version.pipeline_version_id
            progress(f"uploaded version {version_name} ({version_id})")
        else:
            progress(f"version {version_name} is already uploaded ({version_id})")
    experiment_id = _experiment(client, connection, what.experiment)
    return client, pipeline_id, version_id, experiment_id, arguments


def _compile(path: Path, progress: Callable[[str], None]) -> Path:
    from pipeserve.compiler import compile_pipeline

    compile_pipeline(path)
    progress("compiled the pipeline")
    return path


def _find_version(client: Any, connection: Connection, pipeline_id: str, name: str) -> str | None:
    token = ""
    while True:
        page = _call(lambda t=token: client.list_pipeline_versions(pipeline_id, page_token=t, page_size=100),
                     connection, "list pipeline versions")
        for version in page.pipeline_versions or []:
            if version.display_name == name:
                return version.pipeline_version_id
        token = page.next_page_token or ""
        if not token:
            return None


def _experiment(client: Any, connection: Connection, name: str) -> str:
    try:
        return client.get_experiment(experiment_name=name, namespace=connection.namespace).experiment_id
    except ValueError:  # kfp: "No experiment is found with name ..."
        return _call(lambda: client.create_experiment(name, namespace=connection.namespace), connection,
                     "create the experiment").experiment_id


def _wait(client: Any, connection: Connection, run_id: str, timeout_s: float,
          progress: Callable[[str], None]) -> str:
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        state = _call(lambda: client.get_run(run_id), connection, "read the run").state or "PENDING"
        if state != last:
            progress(f"run {run_id}: {state}")
            last = state
        if state in TERMINAL_STATES:
            return state
        if time.monotonic() > deadline:
            raise PipeserveError(f"Run {run_id} is still {state} after {timeout_s:.0f}s; see "
                                 f"{connection.run_link(run_id)} (a run stays PENDING when nothing executes it, "
                                 "e.g. without Argo Workflows' controller).")
        time.sleep(min(5.0, max(0.2, deadline - time.monotonic())))


def _call(fn: Callable[[], Any], connection: Connection, what: str) -> Any:
    """Run one kfp.Client call, turning transport and API errors into pipeserve errors."""
    import contextlib
    import io

    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        # kfp.Client prints "Pipeline details: <link>" on stdout; our stdout is the result (--output json).
        with contextlib.redirect_stdout(io.StringIO()):
            return fn()
    except ApiException as exc:
        message = _server_message(exc)
        if exc.status and 400 <= exc.status < 500 and exc.status not in (401, 403, 404):
            raise KfpRefused(f"Kubeflow Pipelines at {connection.host} refused to {what}: {message}") from exc
        raise KfpUnreachable(f"Kubeflow Pipelines at {connection.host} could not {what}: HTTP {exc.status} "
                             f"{message}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KfpUnreachable(f"Kubeflow Pipelines at {connection.host} is unreachable ({type(exc).__name__}); "
                             "check --host (e.g. $(cat .cluster/kfp-endpoint) for the local cluster).") from exc


def _server_message(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        return " ".join(str(exc.body or exc.reason).split())[:500]
    return str(body.get("message") or body.get("error") or body)[:500]
