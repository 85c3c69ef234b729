"""Read a served InferenceService back: which model it serves, and the options that built it.

The inverse of :func:`pipeserve.kube.builder.build_inference_service` for the fields pipeserve
writes, so a rollout keeps the serving setup (target, mode, replicas, placement, resources,
autoscaling) of what is served unless the caller changes an option. Pure: it reads the object
:class:`~pipeserve.kube.client.Cluster` returned, it calls nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeserve import runtimes
from pipeserve.kube import kserve
from pipeserve.kube.rollout_status import mode_of
from pipeserve.modelcard import ANNOTATION_PREFIX

# Options that follow from the target: the served values are dropped when the target changes.
TARGET_OPTIONS = ("gpus", "gpu_resource", "node_selector", "tolerations", "cpu_request", "cpu_limit",
                  "memory_request", "memory_limit", "runtime_version")
# Options that follow from the autoscaler: dropped when the autoscaler changes.
AUTOSCALER_OPTIONS = ("scale_metric", "scale_target", "prometheus_url")
_RUNTIME_TARGETS = {runtimes.PIPESERVE_RUNTIME: "pipeserve", runtimes.SKLEARNSERVER: "sklearnserver"}
# The KEDA queries builder.keda_query writes, by the metric's tell-tale series.
_KEDA_SERIES = {"DCGM_FI_DEV_GPU_UTIL": "gpu-utilization", "nv_inference_queue_duration_us": "triton-queue-time"}


@dataclass(frozen=True)
class Served:
    """What an InferenceService serves and how, as pipeserve wrote it.

    Args:
        name: InferenceService name.
        namespace: Its namespace.
        mode: ``Standard`` or ``Knative``.
        model_name: ``pipeserve.dev/model-name`` (None: not made by pipeserve).
        model_version: ``pipeserve.dev/model-version``.
        files_sha256: ``pipeserve.dev/model-files-sha256``.
        storage_uri: The predictor's ``storageUri``.
        canary_traffic_percent: ``canaryTrafficPercent`` (Knative mode), None when unset.
        rolled_out_revision: Knative: the revision KServe last saw at 100 % (status), else None.
        options: :meth:`~pipeserve.kube.spec.DeploymentSpec.from_options` keyword arguments that
            rebuild this setup (lineage and canary excluded: they belong to a version and a rollout).
    """

    name: str
    namespace: str
    mode: str
    model_name: str | None
    model_version: str | None
    files_sha256: str | None
    storage_uri: str | None
    canary_traffic_percent: int | None
    rolled_out_revision: str | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def in_canary(self) -> bool:
        """Knative mode with part of the traffic still on the previous revision."""
        return self.mode == kserve.KNATIVE and self.canary_traffic_percent is not None \
            and self.canary_traffic_percent < 100


def read_served(isvc: Mapping[str, Any]) -> Served:
    """Read what ``isvc`` (as the API server returned it) serves, and the options that built it."""
    meta = isvc.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = isvc.get("status") or {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    mode = mode_of(isvc) or kserve.STANDARD
    resources = model.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    gpu_resource = next((k for k in sorted(limits) if kserve.is_gpu_resource(k)), None)
    gpus = int(str(limits[gpu_resource])) if gpu_resource else 0
    runtime = model.get("runtime")
    target = ("triton-gpu" if gpus else "triton-cpu") if runtime == runtimes.TRITON else _RUNTIME_TARGETS.get(runtime)
    autoscaler = annotations.get(kserve.ANNOTATION_AUTOSCALER) or kserve.default_autoscaler(mode)
    options: dict[str, Any] = {
        "target": target,
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "mode": mode,
        "autoscaler": autoscaler if autoscaler in kserve.AUTOSCALERS else None,
        "min_replicas": predictor.get("minReplicas"),
        "max_replicas": predictor.get("maxReplicas"),
        "gpus": gpus,
        "gpu_resource": gpu_resource,
        "node_selector": dict(predictor["nodeSelector"]) if predictor.get("nodeSelector") else None,
        "tolerations": [dict(t) for t in predictor["tolerations"]] if predictor.get("tolerations") else None,
        "runtime_class_name": predictor.get("runtimeClassName"),
        "cpu_request": requests.get("cpu"),
        "cpu_limit": limits.get("cpu"),
        "memory_request": requests.get("memory"),
        "memory_limit": limits.get("memory"),
        "service_account_name": predictor.get("serviceAccountName"),
        "runtime_version": model.get("runtimeVersion"),
        "prometheus_scraping": annotations.get(kserve.ANNOTATION_SCRAPING) == "true",
    }
    if autoscaler in ("hpa", "kpa"):
        options["scale_metric"] = predictor.get("scaleMetric")
        options["scale_target"] = predictor.get("scaleTarget")
    elif autoscaler == "keda":
        options.update(_keda_options(predictor))
    component = (status.get("components") or {}).get("predictor") or {}
    canary = predictor.get("canaryTrafficPercent")
    return Served(
        name=str(meta.get("name")), namespace=str(meta.get("namespace")), mode=mode,
        model_name=annotations.get(ANNOTATION_PREFIX + "model-name"),
        model_version=annotations.get(ANNOTATION_PREFIX + "model-version"),
        files_sha256=annotations.get(ANNOTATION_PREFIX + "model-files-sha256"),
        storage_uri=model.get("storageUri"),
        canary_traffic_percent=None if canary is None else int(canary),
        rolled_out_revision=component.get("latestRolledoutRevision") or None,
        options={k: v for k, v in options.items() if v is not None},
    )


def merge_options(served: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """The served options overridden by the ones given, without served values a changed choice voids.

    A different ``target`` drops the served GPUs, placement, resources and image tag (they were
    the old target's); a different ``autoscaler`` drops its metric, target and Prometheus URL.
    """
    merged = dict(served)
    if "target" in explicit and explicit["target"] != served.get("target"):
        for key in TARGET_OPTIONS:
            merged.pop(key, None)
    if "autoscaler" in explicit and explicit["autoscaler"] != served.get("autoscaler"):
        for key in AUTOSCALER_OPTIONS:
            merged.pop(key, None)
    merged.update({k: v for k, v in explicit.items() if v is not None})
    return merged


def _keda_options(predictor: Mapping[str, Any]) -> dict[str, Any]:
    metrics = ((predictor.get("autoScaling") or {}).get("metrics") or [{}])
    external = (metrics[0] or {}).get("external") or {}
    metric = external.get("metric") or {}
    query = str(metric.get("query") or "")
    out: dict[str, Any] = {"prometheus_url": metric.get("serverAddress")}
    out["scale_metric"] = next((m for series, m in _KEDA_SERIES.items() if series in query), None)
    value = (external.get("target") or {}).get("value")
    try:
        out["scale_target"] = int(float(str(value))) if value is not None else None
    except ValueError:
        out["scale_target"] = None
    return out
