"""Deploy a rendered InferenceService: preflight, server-side apply, wait for Ready, smoke inference.

The one deploy path: `pipeserve deploy`, the pipeline's deploy step and the model promotion
commands all call :func:`deploy`, so each gets the same checks, waits and messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeserve.errors import ClusterError
from pipeserve.kube.client import Cluster, Readiness
from pipeserve.kube.doctor import Check, Preflight, run_checks
from pipeserve.kube.render import Rendered

V2_PATH_ANNOTATION = "pipeserve.dev/v2-model-path"


@dataclass(frozen=True)
class Deployed:
    """What :func:`deploy` did.

    Args:
        name: InferenceService name.
        namespace: Its namespace.
        applied: ``Kind/name`` of every document applied.
        generation: ``metadata.generation`` after the apply.
        changed: False when the apply changed nothing (same generation as before).
        readiness: What the InferenceService reported (None when not waited for).
        url: Where to send v2 requests (``status.url`` + the v2 model path), when known.
        smoke: The smoke inference's outputs (None when skipped).
        checks: The preflight checks.
        applied_at: ``time.monotonic()`` when the apply returned (to time the rollout from it).
    """

    name: str
    namespace: str
    applied: list[str]
    generation: int
    changed: bool
    readiness: Readiness | None
    url: str | None
    smoke: dict[str, Any] | None
    checks: list[Check] = field(default_factory=list)
    applied_at: float | None = None


def deploy(
    cluster: Cluster,
    rendered: Rendered,
    *,
    wait: bool = True,
    timeout_s: float = 600,
    force_conflicts: bool = False,
    smoke: Callable[[str, str, int], dict[str, Any]] | None = None,
    smoke_url: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Deployed:
    """Preflight, apply, wait until Ready and (optionally) send one v2 inference.

    Args:
        cluster: A connected cluster.
        rendered: The documents from :func:`pipeserve.kube.render.render_documents`.
        wait: Wait until the controller has rolled out *this* spec and the InferenceService is
            Ready (:meth:`~pipeserve.kube.client.Cluster.wait_rolled_out`; not only Ready: in
            Standard mode KServe keeps Ready=True from the old pods while a new version's pods are
            Pending), else return right after the apply.
        timeout_s: How long to wait.
        force_conflicts: Take over fields another field manager owns.
        smoke: ``(base_url, model, n_features) -> outputs``; None skips the smoke inference.
        smoke_url: Base URL for the smoke inference instead of ``status.url``.
        progress: Called with one line per step.

    Raises:
        ClusterError: a preflight check failed, the cluster refused, or it was not Ready in time.
        ManifestRejected: the API server or a webhook refused the manifest (exit 2).
    """
    isvc = rendered.inference_service
    name = isvc["metadata"]["name"]
    namespace = isvc["metadata"].get("namespace") or cluster.namespace
    checks = run_checks(cluster, Preflight(rendered.spec, namespace, rendered.card))
    failed = [c for c in checks if c.failed]
    if failed:
        raise ClusterError("preflight failed: " + " | ".join(f"{c.name}: {c.detail}. Fix: {c.fix}" for c in failed))
    progress(f"preflight ok ({len(checks)} checks; `pipeserve doctor` shows them)")
    before = cluster.get(isvc["apiVersion"], isvc["kind"], name, namespace)
    objects = cluster.apply_objects(rendered.documents, force_conflicts=force_conflicts)
    applied_at = time.monotonic()
    generation = int(objects[-1]["metadata"].get("generation", 0))
    changed = before is None or int(before["metadata"].get("generation", 0)) != generation
    applied = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
    progress(f"applied {', '.join(applied)} in namespace {namespace} (generation {generation}"
             f"{'' if changed else ', unchanged: the same model and options are already applied'})")
    if not wait:
        return Deployed(name, namespace, applied, generation, changed, None, None, None, checks, applied_at)
    readiness = cluster.wait_rolled_out(objects[-1], timeout_s=timeout_s, progress=progress)
    path = isvc["metadata"]["annotations"][V2_PATH_ANNOTATION]
    url = f"{readiness.url}{path}/infer" if readiness.url else None
    outputs = None
    if smoke is not None:
        base = smoke_url or readiness.url
        if not base:
            progress("no status.url reported: smoke inference skipped (pass a smoke URL)")
        else:
            outputs = smoke(base, path.rsplit("/", 1)[-1], rendered.card.n_features)
            progress(f"smoke inference ok: {outputs}")
    return Deployed(name, namespace, applied, generation, changed, readiness, url, outputs, checks, applied_at)
