"""What an InferenceService's status and its workload say about a rollout: pure functions, no I/O.

:class:`~pipeserve.kube.client.Cluster` reads the objects; these decide. KServe's Ready condition
lags behind a change (Standard mode stays Ready on the old ReplicaSet while new pods are Pending;
Knative mode reports the previous revision until Knative's status catches up), so a rollout is done
when the controller's workload carries the spec and has rolled it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeserve.kube import kserve
from pipeserve.modelcard import ANNOTATION_PREFIX


@dataclass(frozen=True)
class Readiness:
    """What the InferenceService reported when the wait ended."""

    ready: bool
    url: str | None
    conditions: dict[str, str]


def readiness(obj: Mapping[str, Any]) -> Readiness:
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    return Readiness(
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        url=status.get("url"),
        conditions={c["type"]: c.get("status", "Unknown") + (f" ({c['reason']})" if c.get("reason") else "")
                    for c in conditions},
    )


DEADLINE_EXCEEDED = "the Deployment exceeded its progress deadline"
# Written by KServe on the predictor's pod template: the storage URI its storage initializer fetches.
_SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
_VERSION_ANNOTATION = ANNOTATION_PREFIX + "model-version"


def mode_of(isvc: Mapping[str, Any]) -> str:
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(kserve.ANNOTATION_MODE) or (isvc.get("status") or {}).get("deploymentMode") or ""
    return kserve.LEGACY_MODES.get(mode, mode)


def template_difference(isvc: Mapping[str, Any], template: Mapping[str, Any]) -> str | None:
    """What the workload's pod template lacks of the InferenceService's spec, or None if it carries it.

    Compares what pipeserve sets: the ``pipeserve.dev/*`` annotations and the predictor's own,
    the storage URI (Standard mode), node selector, tolerations, ServiceAccount, RuntimeClass,
    the runtime image tag and the model container's resources.
    """
    from kubernetes.utils import parse_quantity

    meta = isvc.get("metadata") or {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    want = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(ANNOTATION_PREFIX)}
    want.update(predictor.get("annotations") or {})
    got = (template.get("metadata") or {}).get("annotations") or {}
    stale = sorted((k for k, v in want.items() if got.get(k) != v), key=lambda k: (k != _VERSION_ANNOTATION, k))
    if stale:
        return f"annotation {stale[0]} is {got.get(stale[0])!r}, not {want[stale[0]]!r}"
    if _SOURCE_URI in got and model.get("storageUri") and got[_SOURCE_URI] != model["storageUri"]:
        return f"storage URI {got[_SOURCE_URI]}, not {model['storageUri']}"
    pod = template.get("spec") or {}
    selector = pod.get("nodeSelector") or {}
    if any(selector.get(k) != v for k, v in (predictor.get("nodeSelector") or {}).items()):
        return f"nodeSelector {selector}"
    tolerations = pod.get("tolerations") or []
    if any(t not in tolerations for t in predictor.get("tolerations") or []):
        return f"tolerations {tolerations}"
    for field in ("serviceAccountName", "runtimeClassName"):
        if predictor.get(field) and pod.get(field) != predictor[field]:
            return f"{field} {pod.get(field)}"
    container = next((c for c in pod.get("containers") or [] if c.get("name") == "kserve-container"), None)
    if container is None:
        return "no kserve-container"
    if model.get("runtimeVersion") and not str(container.get("image", "")).endswith(f":{model['runtimeVersion']}"):
        return f"image {container.get('image')}"
    have = container.get("resources") or {}
    for kind in ("limits", "requests"):
        for key, value in ((model.get("resources") or {}).get(kind) or {}).items():
            current = (have.get(kind) or {}).get(key)
            if current is None or parse_quantity(str(current)) != parse_quantity(str(value)):
                return f"{kind} {key}={current}"
    return None


def _condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def deployment_pending(isvc: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> str | None:
    """Why the predictor Deployment has not rolled out the InferenceService's spec yet (None: it has)."""
    if deployment is None:
        return "waiting for KServe to create the predictor Deployment"
    name = deployment["metadata"]["name"]
    differs = template_difference(isvc, (deployment.get("spec") or {}).get("template") or {})
    if differs:
        return f"waiting for KServe to update Deployment {name} ({differs})"
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(deployment["metadata"].get("generation") or 0):
        return f"waiting for the Deployment controller to see Deployment {name}'s new spec"
    progressing = _condition(deployment, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return f"{DEADLINE_EXCEEDED}: {progressing.get('message')}"
    wanted = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    old = max(total - updated, 0)
    serving = f" ({old} old one(s) still serving)" if old else ""
    if updated < wanted:
        return f"Deployment {name}: {updated} of {wanted} new replica(s) created{serving}"
    new_available = max(available - old, 0) if old else available
    if old or available < updated:
        return f"Deployment {name}: {min(new_available, updated)} of {updated} new replica(s) available{serving}"
    return None


def knative_pending(isvc: Mapping[str, Any], ksvc: Mapping[str, Any] | None, stored: Mapping[str, Any]) -> str | None:
    """Why the Knative Service has not rolled out the InferenceService's spec yet (None: it has)."""
    if ksvc is None:
        return "waiting for KServe to create the Knative Service"
    name = ksvc["metadata"]["name"]
    differs = template_difference(isvc, (ksvc.get("spec") or {}).get("template") or {})
    if differs:
        return f"waiting for KServe to update Knative Service {name} ({differs})"
    component = (((stored.get("status") or {}).get("components") or {}).get("predictor") or {})
    canary = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    # KServe 0.20 splits only once a revision has rolled out to 100 %; until then the latest gets it all.
    wanted = canary if canary is not None and component.get("latestRolledoutRevision") else 100
    routed = next((t.get("percent") for t in (ksvc.get("spec") or {}).get("traffic") or [] if t.get("latestRevision")),
                  None)
    if routed != wanted:
        return f"waiting for KServe to route {wanted} % to the latest revision of Knative Service {name} (now {routed})"
    status = ksvc.get("status") or {}
    generation = int(ksvc["metadata"].get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return (f"Knative Service {name} generation {generation} not reconciled by Knative Serving yet "
                f"(observed: {status.get('observedGeneration') or 'none'}; is Knative Serving's controller running?)")
    ready = _condition(ksvc, "Ready")
    latest, created = status.get("latestReadyRevisionName"), status.get("latestCreatedRevisionName")
    if ready.get("status") != "True" or latest != created:
        why = f": {ready.get('reason')} {ready.get('message') or ''}".rstrip() if ready.get("reason") else ""
        return f"Knative Service {name}: revision {created or '?'} not Ready (latest ready: {latest or 'none'}){why}"
    if component.get("latestReadyRevision") != latest:
        return f"waiting for KServe to report revision {latest}"
    return None


