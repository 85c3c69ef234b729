"""Rollout and rollback on the cluster: the registry's champion and the served InferenceService move together.

    from pipeserve.rollout import RolloutOptions, promote, rollback
    where = RolloutOptions(namespace="ml")
    promote(registry, cluster, "iris", "2", where)      # serve version 2, then make it the champion
    rollback(registry, cluster, "iris", where)          # serve the previous champion, then move the alias back

**Order.** Everything is read and checked before the cluster is touched: the version's card is
downloaded from the registry and verified, its ``storageUri`` resolved, the serving setup read back
from the InferenceService it replaces (:mod:`pipeserve.kube.readback`: target, mode, replicas,
placement, resources, autoscaling; options given override it), and the documents rendered and
validated. Then :func:`pipeserve.kube.deploy.deploy` runs the preflight checks, applies (server-side,
strict) and waits until the controller has rolled out *this* spec (not only "Ready": in Standard
mode KServe stays Ready on the old pods while new ones are Pending), runs the optional smoke
inference, and only then is the alias moved, compare-and-set against the champion read at the start.

**Failure.** If the new spec never rolls out in time, the smoke inference fails, or the alias move
fails (another writer moved it, the registry went away), the InferenceService is put back as it
was before (its stored labels, annotations and spec, re-applied server-side) and waited for, or
deleted again if nothing was served before; the alias stays; :class:`RolloutFailed` says why and what
was done, in one line (exit 1). Refusals before anything is applied (bad options, webhook, preflight)
change nothing and keep their own error.

**Canary (Knative mode only).** ``canary_percent=N`` applies the new version with
``canaryTrafficPercent: N``; KServe 0.20 then routes N % to the latest revision and the rest to the
last revision it saw at 100 % (tag ``prev``) in the Knative Service. The alias does not move. A
later :func:`promote` of the same version without a canary sends it 100 % and moves the alias;
:func:`rollback` while a canary is in flight sets ``canaryTrafficPercent: 0`` (all traffic back on
the previous revision, no new pods) and leaves the alias. Standard mode refuses a canary: KServe
ignores ``canaryTrafficPercent`` there, and 0.20's ``spec.canary`` starts the new version beside the
old but routes it no traffic without the Gateway API.

Each rollout is recorded on the version in the registry (:mod:`pipeserve.registry.rollouts`).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeserve.errors import ClusterError, ConfigError, ConflictError, PipeserveError, one_line
from pipeserve.kube import kserve
from pipeserve.kube.readback import Served, read_served
from pipeserve.rollout_plan import UNREAD as _UNREAD
from pipeserve.rollout_plan import Plan as _Plan
from pipeserve.rollout_plan import Progress, RolloutOptions
from pipeserve.rollout_plan import plan as _plan

if TYPE_CHECKING:
    from pipeserve.kube.client import Cluster
    from pipeserve.kube.deploy import Deployed
    from pipeserve.registry import AliasChange
    from pipeserve.registry.mlflow_registry import MlflowRegistry

__all__ = ["Rollout", "RolloutFailed", "RolloutOptions", "promote", "rollback", "snapshot"]

# Annotations a restore must not take ownership of.
_NOT_RESTORED = ("kubectl.kubernetes.io/last-applied-configuration",)


class RolloutFailed(ClusterError):
    """The new version never rolled out (or its alias move failed); the InferenceService was put back.

    Attributes:
        restored: Whether the InferenceService is back as it was (False: putting it back failed too).
        restore_seconds: How long putting it back took until Ready again (None when not waited for).
    """

    def __init__(self, message: str, *, restored: bool, restore_seconds: float | None = None) -> None:
        super().__init__(message)
        self.restored = restored
        self.restore_seconds = restore_seconds


@dataclass(frozen=True)
class Rollout:
    """What a rollout did.

    Args:
        action: ``promote``, ``canary``, ``rollback`` or ``abort-canary``.
        name: Registered model name.
        version: The version the InferenceService now names (for a canary: the canary version).
        previous: The version that served all traffic before (None: nothing was served).
        namespace: Namespace of the InferenceService.
        inference_service: Its name.
        mode: ``Standard`` or ``Knative``.
        change: The alias move (None: the alias did not move).
        changed: Whether the apply changed the InferenceService.
        waited: Whether it was waited for until rolled out and Ready.
        seconds: From the apply until rolled out and Ready (None when not waited for).
        url: Where v2 requests go (``status.url`` + the model path), when known.
        traffic: Knative mode: the Knative Service's traffic block as KServe wrote it.
        smoke: The smoke inference's outputs (None when skipped).
        notes: Anything the caller should know.
    """

    action: str
    name: str
    version: str
    previous: str | None
    namespace: str
    inference_service: str
    mode: str
    change: AliasChange | None
    changed: bool
    waited: bool
    seconds: float | None
    url: str | None
    traffic: list[dict[str, Any]] = field(default_factory=list)
    smoke: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["change"] = self.change.to_dict() if self.change else None
        out["notes"] = list(self.notes)
        return out


# ---- the verbs -------------------------------------------------------------------------------


def promote(registry: MlflowRegistry, cluster: Cluster, name: str, version: str, options: RolloutOptions, *,
            expected: str | None | object = _UNREAD, reason: str = "", progress: Progress = lambda _: None) -> Rollout:
    """Serve ``name/version`` in the InferenceService, then make it the champion (a canary: serve only).

    Args:
        registry: The model registry.
        cluster: A connected cluster.
        name: Registered model name.
        version: The version to serve.
        options: Where and how.
        expected: The champion the caller read (None: none); the alias move is compare-and-set
            against it. Default: the champion now.
        reason: Recorded with the alias move.
        progress: Called with one line per step.

    Raises:
        ConfigError: a refused option (``--canary`` in Standard mode, a mode change, ...); nothing applied.
        ConflictError: the champion is not ``expected``; nothing applied.
        RolloutFailed: it never rolled out (or the alias move failed); the InferenceService is back.
        ClusterError, ManifestRejected: the preflight or the API server refused; nothing applied.
    """
    from pipeserve.registry import CHAMPION

    version = str(version).strip()
    champion = registry.aliases(name).get(CHAMPION)
    if expected is not _UNREAD and champion != expected:
        raise ConflictError(f"Cannot promote {name}/{version}: {name}@{CHAMPION} is {champion or 'unset'}, not "
                            f"{expected or 'unset'} as read before; nothing was deployed. Re-read with `pipeserve "
                            f"models show {name}@{CHAMPION}` and decide again.")
    plan = _plan(registry, cluster, name, version, options, progress)
    canary = options.canary_percent is not None

    def move_alias() -> AliasChange | None:
        return None if canary else registry.promote(name, version, expected=champion, reason=reason)

    stable = champion if (plan.served and plan.served.in_canary) else plan.previous
    return _roll(registry, cluster, plan, options, "canary" if canary else "promote", move_alias,
                 champion=champion, stable=stable, progress=progress)


def rollback(registry: MlflowRegistry, cluster: Cluster, name: str, options: RolloutOptions, *, reason: str = "",
             progress: Progress = lambda _: None) -> Rollout:
    """Serve the previous champion again and give it the alias back; or abort a canary in flight.

    While a Knative canary is in flight (the InferenceService names a version other than the
    champion with ``canaryTrafficPercent`` below 100), rollback sets ``canaryTrafficPercent: 0``:
    all traffic goes back to the previous revision and the alias stays. Otherwise the champion
    before the current one (the alias history) is rolled out like :func:`promote` does, then the
    alias is moved back (compare-and-set).

    Raises:
        NotFound: no earlier champion in the history.
        ConflictError: the alias was moved outside pipeserve; nothing applied.
        RolloutFailed: it never rolled out (or the alias move failed); the InferenceService is back.
    """
    from pipeserve.registry import CHAMPION
    from pipeserve.registry import history as hist

    if options.canary_percent is not None:
        raise ConfigError("rollback takes no canary percentage; it returns all traffic to the previous version.")
    current = registry.aliases(name).get(CHAMPION)
    isvc_name = options.name or name
    live = cluster.get(kserve.API_VERSION, kserve.KIND, isvc_name, options.namespace)
    served = read_served(live) if live else None
    if live is not None and served is not None and served.in_canary and served.model_version != current:
        return _abort_canary(registry, cluster, name, live, served, current, options, progress)
    target = hist.rollback_target(name, registry.history(name), current)
    plan = _plan(registry, cluster, name, target, options, progress, live=live)

    def move_alias() -> AliasChange | None:
        return registry.set_alias(name, CHAMPION, target, expected=current, reason=reason, action="rollback")

    return _roll(registry, cluster, plan, options, "rollback", move_alias, champion=current, stable=plan.previous,
                 progress=progress)


def snapshot(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """The stored InferenceService as a document to re-apply: its labels, annotations and spec.

    Server-side apply of it (field manager pipeserve, conflicts forced) puts the object back as it
    was: fields a later apply added are dropped, the spec's values return. Status, finalizers and
    owner references stay the controller's.
    """
    meta = isvc["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_RESTORED}
    metadata = {"name": meta["name"], "namespace": meta.get("namespace"), "labels": dict(meta.get("labels") or {}),
                "annotations": annotations}
    return {"apiVersion": isvc["apiVersion"], "kind": isvc["kind"],
            "metadata": {k: v for k, v in metadata.items() if v}, "spec": copy.deepcopy(isvc["spec"])}


# ---- doing it ----------------------------------------------------------------------------------


def _roll(registry: MlflowRegistry, cluster: Cluster, plan: _Plan, options: RolloutOptions, action: str,
          move_alias: Callable[[], AliasChange | None], *, champion: str | None, stable: str | None,
          progress: Progress) -> Rollout:
    from pipeserve.kube.deploy import deploy

    assert plan.rendered is not None
    rendered = plan.rendered
    return _run(registry, cluster, plan, options, action, champion, progress, lambda: deploy(
        cluster, rendered, wait=options.wait, timeout_s=options.timeout_s, force_conflicts=options.force_conflicts,
        smoke=options.smoke, smoke_url=options.smoke_url, progress=progress), move_alias, stable)


def _abort_canary(registry: MlflowRegistry, cluster: Cluster, name: str, live: dict[str, Any], served: Served,
                  champion: str | None, options: RolloutOptions, progress: Progress) -> Rollout:
    from pipeserve.kube.deploy import Deployed

    plan = _Plan(name, str(served.model_version), served.name, served.namespace, None, live, served)
    doc = snapshot(live)
    doc["spec"]["predictor"]["canaryTrafficPercent"] = 0
    progress(f"canary of {name}/{served.model_version} in flight ({served.canary_traffic_percent} %): setting "
             "canaryTrafficPercent 0, all traffic back to the previous revision")

    def apply() -> Deployed:
        stored = cluster.apply_objects([doc], force_conflicts=options.force_conflicts)[-1]
        applied_at = time.monotonic()
        generation = int(stored["metadata"].get("generation", 0))
        changed = generation != int(live["metadata"].get("generation", 0))
        readiness = cluster.wait_rolled_out(stored, timeout_s=options.timeout_s, progress=progress) \
            if options.wait else None
        return Deployed(served.name, served.namespace, [f"InferenceService/{served.name}"], generation, changed,
                        readiness, readiness.url if readiness else None, None, applied_at=applied_at)

    return _run(registry, cluster, plan, options, "abort-canary", champion, progress, apply, lambda: None, champion)


def _run(registry: MlflowRegistry, cluster: Cluster, plan: _Plan, options: RolloutOptions, action: str,
         champion: str | None, progress: Progress, apply: Callable[[], Deployed],
         move_alias: Callable[[], AliasChange | None], stable: str | None) -> Rollout:
    started = time.monotonic()
    phase = "apply"
    try:
        deployed = apply()
        seconds = time.monotonic() - (deployed.applied_at or started) if options.wait else None
        phase = "alias"
        change = move_alias()
    except KeyboardInterrupt:
        if _applied(cluster, plan):
            _put_back(cluster, plan, options, progress, wait=False)
        raise
    except Exception as exc:
        if phase == "apply" and not _applied(cluster, plan):
            raise  # refused before anything changed: the refusal's own error and exit code
        restored, note, restore_seconds = _put_back(cluster, plan, options, progress, wait=options.wait)
        failure = one_line(str(exc) if isinstance(exc, PipeserveError) else f"{type(exc).__name__}: {exc}", 1500)
        where = f"{plan.namespace}/{plan.isvc_name}"
        what = {"rollback": f"rollback of {where} to {plan.name}/{plan.version}",
                "abort-canary": f"aborting the canary of {plan.name}/{plan.version} in {where}"}.get(
                    action, f"{'canary' if action == 'canary' else 'rollout'} of {plan.name}/{plan.version} to {where}")
        if phase == "alias":
            failure = f"it rolled out, but moving {plan.name}@champion failed: {failure}"
        _record(registry, plan, action, "failed", options, cluster, stable, seconds=None, reason=failure,
                progress=progress)
        alias = f"{plan.name}@champion stays {champion or 'unset'}" if phase == "apply" else \
            f"this command did not move {plan.name}@champion"
        raise RolloutFailed(f"{what} failed: {failure.rstrip('.')}; {note}; "
                            f"{alias}.", restored=restored, restore_seconds=restore_seconds) from exc
    notes = []
    if not options.wait:
        notes.append("not waited for: nothing checked that it runs, and nothing rolls back by itself")
    mode = _mode_of(plan)
    rollout = Rollout(action=action, name=plan.name, version=plan.version, previous=stable,
                      namespace=plan.namespace, inference_service=plan.isvc_name, mode=mode, change=change,
                      changed=deployed.changed, waited=options.wait, seconds=seconds, url=deployed.url,
                      traffic=_traffic(cluster, plan) if mode == kserve.KNATIVE else [], smoke=deployed.smoke,
                      notes=tuple(notes))
    if deployed.changed or change is not None:
        outcome = {"canary": "canary", "abort-canary": "canary-aborted"}.get(action, "serving")
        _record(registry, plan, action, outcome, options, cluster, stable, seconds=seconds, reason="",
                progress=progress)
        if action in ("promote", "rollback") and stable and stable != plan.version:
            _record(registry, dataclasses.replace(plan, version=stable), action, "replaced", options, cluster,
                    plan.version, seconds=None, reason="", progress=progress)
    return rollout


def _applied(cluster: Cluster, plan: _Plan) -> bool:
    """Whether the InferenceService differs from what was read before the apply."""
    try:
        now = cluster.get(kserve.API_VERSION, kserve.KIND, plan.isvc_name, plan.namespace)
    except PipeserveError:
        return True  # cannot tell: try to put it back
    if plan.live is None:
        return now is not None
    return now is None or now["metadata"].get("generation") != plan.live["metadata"].get("generation")


def _put_back(cluster: Cluster, plan: _Plan, options: RolloutOptions, progress: Progress,
              wait: bool) -> tuple[bool, str, float | None]:
    """Restore the InferenceService read before the rollout; return (restored, a sentence, seconds)."""
    where = f"{plan.namespace}/{plan.isvc_name}"
    version = f"version {plan.previous}" if plan.previous else "its previous spec"
    try:
        if plan.live is None:
            progress(f"rollback: deleting InferenceService {where} (nothing was served before)")
            cluster.delete_inference_service(plan.isvc_name, plan.namespace)
            return True, f"removed InferenceService {where} again (nothing was served before)", None
        progress(f"rollback: re-applying InferenceService {where} as it was ({version})")
        stored = cluster.apply_objects([snapshot(plan.live)], force_conflicts=True)[-1]
        started = time.monotonic()
        if not wait:
            return True, f"re-applied {where} as it was ({version}; not waited for)", None
        cluster.wait_rolled_out(stored, timeout_s=options.timeout_s,
                                progress=lambda line: progress(f"rollback: {line}"))
    except PipeserveError as exc:
        again = (f"`pipeserve models promote {plan.name} {plan.previous} --namespace {plan.namespace}`"
                 if plan.previous else "re-apply your InferenceService")
        return False, f"putting {where} back to {version} failed too ({one_line(exc, 1500)}); fix that, then {again}", \
            None
    seconds = time.monotonic() - started
    return True, f"rolled {where} back to {version} (Ready {seconds:.1f} s after re-applying it)", seconds


def _record(registry: MlflowRegistry, plan: _Plan, action: str, outcome: str, options: RolloutOptions,
            cluster: Cluster, other: str | None, *, seconds: float | None, reason: str, progress: Progress) -> None:
    """Record the rollout on the version (best effort: a registry failure here is reported, not raised)."""
    from pipeserve.registry.rollouts import RolloutRecord, record_rollout

    percent = {"serving": 100, "replaced": 0, "canary-aborted": 0, "failed": 0}.get(outcome, options.canary_percent)
    record = RolloutRecord(action=action, outcome=outcome, namespace=plan.namespace, inference_service=plan.isvc_name,
                           cluster=cluster.server, context=cluster.context_name, mode=_mode_of(plan),
                           traffic_percent=percent, other_version=other,
                           seconds=None if seconds is None else round(seconds, 3), reason=reason)
    try:
        record_rollout(registry, plan.name, plan.version, record)
    except PipeserveError as exc:
        progress(f"warning: could not record the rollout on {plan.name}/{plan.version} in the registry: {exc}")


def _traffic(cluster: Cluster, plan: _Plan) -> list[dict[str, Any]]:
    """The Knative Service's traffic block as KServe wrote it (with Knative's resolved names when reported)."""
    try:
        ksvc = cluster.get(*kserve.KNATIVE_SERVICE, f"{plan.isvc_name}-predictor", plan.namespace)
    except PipeserveError:
        return []
    if ksvc is None:
        return []
    status = ksvc.get("status") or {}
    current = status.get("observedGeneration") == ksvc["metadata"].get("generation")
    latest = status.get("latestReadyRevisionName") if current else None
    out = []
    for entry in (ksvc.get("spec") or {}).get("traffic") or []:
        out.append({"revision": entry.get("revisionName") or latest, "latest": bool(entry.get("latestRevision")),
                    "percent": entry.get("percent"), "tag": entry.get("tag")})
    return out


def _mode_of(plan: _Plan) -> str:
    if plan.rendered is not None:
        return plan.rendered.spec.mode
    return plan.served.mode if plan.served else kserve.STANDARD
