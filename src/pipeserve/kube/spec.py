"""The typed deployment spec: what to deploy where, checked before any YAML is written.

A :class:`DeploymentSpec` holds every choice the InferenceService builder needs. Building one is
cheap and pure; :meth:`DeploymentSpec.check` refuses the combinations a KServe 0.21 cluster would
reject (or silently ignore), each with a message naming the fix, so nothing broken is ever
written. ``None`` in a field means "the target's default", resolved by :meth:`DeploymentSpec.resolved`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeserve.errors import ConfigError
from pipeserve.runtimes import TARGET_RUNTIMES

TARGETS = tuple(TARGET_RUNTIMES)
MODES = ("Standard", "Knative")
# "kpa" is implicit in Knative mode (KServe writes no autoscalerClass annotation for it).
AUTOSCALERS = ("hpa", "kpa", "keda", "none")
# The metrics each autoscaler accepts. HPA: cpu/memory only (KServe #4259); KPA: concurrency/rps
# (the CRD enum has no "qps"); KEDA: an External Prometheus query we write for the user.
SCALE_METRICS: dict[str, tuple[str, ...]] = {
    "hpa": ("cpu", "memory"),
    "kpa": ("concurrency", "rps"),
    "keda": ("gpu-utilization", "triton-queue-time"),
    "none": (),
}
DEFAULT_SCALE_TARGETS = {
    "cpu": 80,  # percent of the CPU request (KServe's HPA default)
    "memory": 80,  # percent of the memory request
    "concurrency": 4,  # in-flight requests per replica
    "rps": 100,  # requests per second per replica
    "gpu-utilization": 70,  # DCGM_FI_DEV_GPU_UTIL percent, averaged over the predictor's pods
    "triton-queue-time": 50,  # average queue time per request, milliseconds
}

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
# Label set by NVIDIA GPU feature discovery (GPU operator) on every GPU node.
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"

# Per-target resource defaults: (cpu request, cpu limit, memory request, memory limit).
_RESOURCE_DEFAULTS = {
    "triton-gpu": ("1", "2", "2Gi", "4Gi"),
    "triton-cpu": ("1", "2", "1Gi", "2Gi"),
    "pipeserve": ("500m", "1", "512Mi", "1Gi"),
    "sklearnserver": ("500m", "1", "512Mi", "1Gi"),
}

# Kubernetes resource.Quantity (the same pattern the CRD schema enforces).
QUANTITY_RE = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# KServe's InferenceService name format is a DNS-1035 label (a DNS-1123 label starting with a letter).
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


class DeploymentConfigError(ConfigError):
    """A deployment spec that a KServe cluster would reject, or that could not work as asked."""


@dataclass(frozen=True)
class Toleration:
    """A pod toleration (Kubernetes ``core/v1`` Toleration).

    Args:
        key: Taint key, e.g. ``nvidia.com/gpu``.
        operator: ``Exists`` or ``Equal``.
        value: Taint value (with ``Equal`` only).
        effect: ``NoSchedule``, ``PreferNoSchedule``, ``NoExecute`` or empty for all effects.
    """

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """Parse ``key[=value][:effect]`` (kubectl taint syntax); no value means ``Exists``."""
        effect: str | None = None
        if ":" in text:
            text, effect = text.rsplit(":", 1)
        if "=" in text:
            key, value = text.split("=", 1)
            return cls(key=key, operator="Equal", value=value, effect=effect or None)
        return cls(key=text, operator="Exists", effect=effect or None)


@dataclass(frozen=True)
class DeploymentSpec:
    """How and where to serve a packaged model with KServe.

    Args:
        target: ``triton-gpu`` (ONNX on kserve-tritonserver with a GPU, the default), ``triton-cpu``
            (the same ONNX on Triton without a GPU), ``pipeserve`` (the project's own runtime,
            ``pipeserve-runtime``, CPU or GPU), or ``sklearnserver`` (stock runtime loading a
            joblib pickle: opt-in, it unpickles, i.e. runs code from the model bucket).
        name: InferenceService name; defaults to the model card's name. A DNS-1035 label.
        namespace: Namespace of the InferenceService; None leaves it to kubectl/kustomize/helm.
        mode: ``Standard`` (Deployment + Service + HPA/KEDA; the default) or ``Knative``
            (revisions, KPA, scale-to-zero, canaryTrafficPercent). Cannot be changed after creation.
        autoscaler: ``hpa`` (Standard), ``kpa`` (Knative), ``keda`` (Standard, Prometheus metric)
            or ``none`` (fixed replicas). None picks ``hpa`` in Standard and ``kpa`` in Knative mode.
        scale_metric: hpa: ``cpu``/``memory``; kpa: ``concurrency``/``rps``; keda:
            ``gpu-utilization`` (DCGM) or ``triton-queue-time``. None picks the first one.
        scale_target: Target per replica (percent for cpu/memory/gpu-utilization, requests for
            concurrency, requests/s for rps, milliseconds for triton-queue-time).
        min_replicas: Minimum replicas; 0 (scale to zero) needs Knative or KEDA.
        max_replicas: Maximum replicas (>= min_replicas, >= 1).
        gpus: GPUs per replica; None means 1 for triton-gpu, 0 otherwise.
        gpu_resource: Extended resource name of the GPU.
        node_selector: Pod node selector; None means the GPU feature-discovery label on GPU targets.
        tolerations: Pod tolerations; None means tolerate the GPU taint on GPU targets.
        runtime_class_name: Optional RuntimeClass (e.g. ``nvidia``) for clusters that need it.
        cpu_request: CPU request (Kubernetes quantity); None means the target's default.
        cpu_limit: CPU limit.
        memory_request: Memory request.
        memory_limit: Memory limit.
        canary_traffic_percent: Percent of traffic to the latest revision (Knative mode only).
        service_account_name: ServiceAccount whose Secret holds the storage credentials.
        runtime_version: Image tag override for the serving runtime (e.g. Triton ``24.08-py3``).
        prometheus_url: Prometheus server that KEDA queries.
        prometheus_scraping: Ask KServe to add prometheus.io scrape annotations to the pods.
        pipeline_run_id: Lineage: the pipeline run that produced the model (default: the card's).
        source_revision: Lineage: the source revision (git sha) of the training code.
    """

    target: str = "triton-gpu"
    name: str | None = None
    namespace: str | None = None
    mode: str = "Standard"
    autoscaler: str | None = None
    scale_metric: str | None = None
    scale_target: int | None = None
    min_replicas: int = 1
    max_replicas: int = 3
    gpus: int | None = None
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    node_selector: Mapping[str, str] | None = None
    tolerations: Sequence[Toleration] | None = None
    runtime_class_name: str | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    canary_traffic_percent: int | None = None
    service_account_name: str | None = None
    runtime_version: str | None = None
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    prometheus_scraping: bool = True
    pipeline_run_id: str | None = None
    source_revision: str | None = None
    # Not a user option: the builder's view once defaults are filled in (see resolved()).
    _resolved: bool = field(default=False, repr=False, compare=False)

    # ---- construction from primitive values (CLI, KFP component) ---------------------------

    @classmethod
    def from_options(
        cls,
        *,
        node_selector: str | Iterable[str] | Mapping[str, str] | None = None,
        tolerations: str | Iterable[str | Mapping[str, Any] | Toleration] | None = None,
        **options: Any,
    ) -> DeploymentSpec:
        """Build a spec from primitive values, as a CLI or a KFP component receives them.

        ``None`` values are dropped (so they mean "default"), ``node_selector`` may be
        ``["k=v", ...]`` or ``"k=v,k2=v2"`` and ``tolerations`` ``["key[=value][:effect]", ...]``,
        the same comma-separated, or dicts. Empty strings also mean "default" (KFP passes "" for
        unset string parameters).

        Args:
            node_selector: ``k=v`` strings or a mapping.
            tolerations: ``key[=value][:effect]`` strings, dicts or Toleration objects.
            **options: Any other DeploymentSpec field by name.

        Returns:
            The checked spec (see :meth:`check`).

        Raises:
            DeploymentConfigError: unknown option names or a refused combination.
        """
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DeploymentConfigError(
                f"Unknown deployment option(s) {', '.join(unknown)}; valid options are: {', '.join(sorted(known))}."
            )
        kwargs = {k: v for k, v in options.items() if v is not None and v != ""}
        if isinstance(node_selector, str):
            node_selector = [item.strip() for item in node_selector.split(",") if item.strip()] or None
        if isinstance(tolerations, str):
            tolerations = [item.strip() for item in tolerations.split(",") if item.strip()] or None
        if node_selector is not None:
            kwargs["node_selector"] = _parse_node_selector(node_selector)
        if tolerations is not None:
            kwargs["tolerations"] = tuple(_parse_toleration(t) for t in tolerations)
        spec = cls(**kwargs)
        spec.check()
        return spec

    # ---- defaults ---------------------------------------------------------------------------

    @property
    def runtime(self) -> str:
        """Name of the (Cluster)ServingRuntime the target pins."""
        return TARGET_RUNTIMES[self.target]

    def resolved(self) -> DeploymentSpec:
        """Return a copy with every None default filled in for this target and mode (checked)."""
        if self._resolved:
            return self
        self.check()
        autoscaler = self.autoscaler or ("kpa" if self.mode == "Knative" else "hpa")
        metrics = SCALE_METRICS[autoscaler]
        scale_metric = self.scale_metric or (metrics[0] if metrics else None)
        scale_target = self.scale_target
        if scale_target is None and scale_metric is not None:
            scale_target = DEFAULT_SCALE_TARGETS[scale_metric]
        gpus = self.gpus if self.gpus is not None else (1 if self.target == "triton-gpu" else 0)
        node_selector = self.node_selector
        tolerations = self.tolerations
        if gpus > 0:
            if node_selector is None:
                node_selector = dict(DEFAULT_GPU_NODE_SELECTOR)
            if tolerations is None:
                tolerations = (Toleration(key=self.gpu_resource),)
        cpu_req, cpu_lim, mem_req, mem_lim = _RESOURCE_DEFAULTS[self.target]
        return dataclasses.replace(
            self,
            autoscaler=autoscaler,
            scale_metric=scale_metric,
            scale_target=scale_target,
            gpus=gpus,
            node_selector=dict(node_selector or {}),
            tolerations=tuple(tolerations or ()),
            cpu_request=self.cpu_request or cpu_req,
            cpu_limit=self.cpu_limit or cpu_lim,
            memory_request=self.memory_request or mem_req,
            memory_limit=self.memory_limit or mem_lim,
            _resolved=True,
        )

    # ---- refusals ---------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse combinations a KServe 0.21 cluster would reject or silently not honour.

        Raises:
            DeploymentConfigError: with a message saying what was asked, why it cannot work and
                what to use instead.
        """
        fail = DeploymentConfigError
        if self.target not in TARGETS:
            raise fail(f"Unknown target {self.target!r}; valid targets are: {', '.join(TARGETS)}.")
        if self.mode not in MODES:
            hint = {"RawDeployment": "Standard", "Serverless": "Knative"}.get(self.mode)
            extra = f" ({self.mode!r} was renamed to {hint!r} in KServe 0.16)" if hint else ""
            raise fail(f"Unknown deployment mode {self.mode!r}{extra}; valid modes are: {', '.join(MODES)}.")
        if self.name is not None:
            check_name(self.name)
        if self.namespace is not None and not _is_dns1123_label(self.namespace):
            raise fail(
                f"Namespace {self.namespace!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters)."
            )
        autoscaler = self.autoscaler or ("kpa" if self.mode == "Knative" else "hpa")
        if autoscaler not in AUTOSCALERS:
            raise fail(f"Unknown autoscaler {autoscaler!r}; valid autoscalers are: {', '.join(AUTOSCALERS)}.")
        if autoscaler == "kpa" and self.mode != "Knative":
            raise fail(
                "The kpa autoscaler (Knative Pod Autoscaler) exists only in Knative mode; use --mode Knative, "
                "or in Standard mode use hpa (cpu/memory) or keda (Prometheus metrics)."
            )
        if autoscaler == "keda" and self.mode != "Standard":
            raise fail(
                "The keda autoscaler works only in Standard mode (KServe creates a KEDA ScaledObject for the "
                "Deployment); use --mode Standard, or kpa in Knative mode."
            )
        if autoscaler == "hpa" and self.mode == "Knative":
            raise fail(
                "In Knative mode KServe scales with the Knative Pod Autoscaler: use autoscaler kpa "
                "(scale metric concurrency or rps), or Standard mode for an HPA on cpu/memory."
            )
        if self.scale_metric is not None:
            allowed = SCALE_METRICS[autoscaler]
            if self.scale_metric not in allowed:
                hint = " ('qps' appears in old KServe docs; the CRD only accepts 'rps')" if self.scale_metric == "qps" else ""
                others = [a for a, ms in SCALE_METRICS.items() if self.scale_metric in ms]
                where = f"; {self.scale_metric!r} belongs to the {others[0]} autoscaler" if others else ""
                if not allowed:
                    raise fail(
                        f"Autoscaler none keeps a fixed replica count and takes no scale metric; got {self.scale_metric!r}."
                    )
                raise fail(
                    f"Scale metric {self.scale_metric!r} is not allowed with the {autoscaler} autoscaler in "
                    f"{self.mode} mode{hint}{where}; allowed: {', '.join(allowed)}."
                )
        if self.scale_target is not None:
            if self.scale_target < 1:
                raise fail(f"scale_target must be a positive integer; got {self.scale_target}.")
            metric = self.scale_metric or (SCALE_METRICS[autoscaler] or (None,))[0]
            if metric in ("cpu", "memory", "gpu-utilization") and self.scale_target > 100:
                raise fail(f"scale_target for {metric} is a percentage (1..100); got {self.scale_target}.")
            if metric is None:
                raise fail("Autoscaler none keeps a fixed replica count and takes no scale_target.")
        if self.max_replicas < 1:
            raise fail(f"max_replicas must be at least 1; got {self.max_replicas}.")
        if self.min_replicas < 0:
            raise fail(f"min_replicas must be 0 or more; got {self.min_replicas}.")
        if self.min_replicas > self.max_replicas:
            raise fail(
                f"min_replicas ({self.min_replicas}) is greater than max_replicas ({self.max_replicas}); "
                "raise max_replicas or lower min_replicas."
            )
        if self.min_replicas == 0 and autoscaler in ("hpa", "none"):
            raise fail(
                f"minReplicas 0 (scale to zero) is impossible with the {autoscaler} autoscaler: the HPA clamps it "
                "to 1 in Standard mode. Use --mode Knative (KPA), or autoscaler keda, or set min_replicas >= 1."
            )
        if autoscaler == "none" and self.min_replicas != self.max_replicas:
            raise fail(
                f"Autoscaler none runs a fixed number of replicas, but min_replicas ({self.min_replicas}) != "
                f"max_replicas ({self.max_replicas}); set them equal or pick an autoscaler."
            )
        if self.canary_traffic_percent is not None:
            if self.mode != "Knative":
                raise fail(
                    "canaryTrafficPercent splits traffic between Knative revisions and is only honoured in "
                    "Knative mode; use --mode Knative, or drop the canary percentage in Standard mode."
                )
            if not 0 <= self.canary_traffic_percent <= 100:
                raise fail(f"canary_traffic_percent must be within 0..100; got {self.canary_traffic_percent}.")
        gpus = self.gpus if self.gpus is not None else (1 if self.target == "triton-gpu" else 0)
        if gpus < 0:
            raise fail(f"gpus must be 0 or more; got {gpus}.")
        if self.target == "sklearnserver" and gpus > 0:
            raise fail(
                "A GPU with the sklearnserver runtime would sit idle: scikit-learn predicts on the CPU. "
                "Serve the ONNX model on a GPU with target triton-gpu, or set gpus to 0."
            )
        if self.target == "triton-cpu" and gpus > 0:
            raise fail(f"Target triton-cpu runs without a GPU but {gpus} GPU(s) were requested; use target triton-gpu.")
        if self.target == "triton-gpu" and gpus == 0:
            raise fail("Target triton-gpu needs at least one GPU; use target triton-cpu to serve ONNX on CPUs.")
        if autoscaler == "keda":
            metric = self.scale_metric or SCALE_METRICS["keda"][0]
            if metric == "gpu-utilization" and gpus == 0:
                raise fail(
                    "The keda gpu-utilization metric (DCGM) needs a GPU target; use triton-queue-time with "
                    "Triton, or the hpa autoscaler on cpu for CPU targets."
                )
            if metric == "triton-queue-time" and not self.target.startswith("triton"):
                raise fail(
                    f"The keda triton-queue-time metric comes from Triton; target {self.target} does not export it. "
                    "Use the hpa autoscaler on cpu instead."
                )
        if not _QUALIFIED_NAME_RE.match(self.gpu_resource):
            raise fail(f"gpu_resource {self.gpu_resource!r} is not a resource name like 'nvidia.com/gpu'.")
        for label in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            value = getattr(self, label)
            if value is not None and not QUANTITY_RE.match(str(value)):
                raise fail(
                    f"{label} {value!r} is not a Kubernetes quantity; use forms like '500m', '2', '512Mi', '4Gi'."
                )
        for key, value in (self.node_selector or {}).items():
            if not _QUALIFIED_NAME_RE.match(key) or not _LABEL_VALUE_RE.match(str(value)) or len(str(value)) > 63:
                raise fail(f"Node selector {key}={value} is not a valid label key/value pair.")
        for tol in self.tolerations or ():
            if not isinstance(tol, Toleration):
                raise fail(f"Tolerations must be Toleration objects; got {tol!r} (use DeploymentSpec.from_options).")
            if tol.operator not in ("Exists", "Equal"):
                raise fail(f"Toleration operator must be Exists or Equal; got {tol.operator!r}.")
            if tol.effect not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise fail(f"Toleration effect must be NoSchedule, PreferNoSchedule or NoExecute; got {tol.effect!r}.")
            if tol.operator == "Exists" and tol.value:
                raise fail(f"Toleration {tol.key}: operator Exists takes no value; use Equal or drop the value.")
        if self.runtime_class_name is not None and not _is_dns1123_subdomain(self.runtime_class_name):
            raise fail(f"runtime_class_name {self.runtime_class_name!r} is not a DNS-1123 subdomain.")
        if self.service_account_name is not None and not _is_dns1123_subdomain(self.service_account_name):
            raise fail(f"service_account_name {self.service_account_name!r} is not a DNS-1123 subdomain.")
        if not self.prometheus_url.startswith(("http://", "https://")):
            raise fail(f"prometheus_url must be an http(s) URL; got {self.prometheus_url!r}.")


def check_name(name: str) -> None:
    """Refuse an InferenceService name KServe would reject.

    KServe validates names as DNS-1035 labels (``[a-z]([-a-z0-9]*[a-z0-9])?``): a DNS-1123 label that
    also starts with a letter. It appends ``-predictor`` and more to derive object names, so shorter
    is safer; 63 characters is the hard limit.

    Raises:
        DeploymentConfigError: the name is not valid.
    """
    if not _NAME_RE.match(name) or len(name) > 63:
        suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
        suggestion = re.sub(r"^[^a-z]+", "", suggestion)[:63].rstrip("-") or "model"
        raise DeploymentConfigError(
            f"InferenceService name {name!r} is not a DNS-1123 label starting with a letter (lower-case letters, "
            f"digits and '-', at most 63 characters); try {suggestion!r}."
        )


def _is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", value) is not None


def _is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", value) is not None


def _parse_node_selector(raw: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeploymentConfigError(f"Node selector {item!r} must look like KEY=VALUE, e.g. nvidia.com/gpu.present=true.")
        out[key] = value
    return out


def _parse_toleration(raw: str | Mapping[str, Any] | Toleration) -> Toleration:
    if isinstance(raw, Toleration):
        return raw
    if isinstance(raw, Mapping):
        unknown = set(raw) - _TOLERATION_KEYS
        if unknown or "key" not in raw:
            raise DeploymentConfigError(
                f"Toleration {dict(raw)!r} must have a 'key' and only the fields key, operator, value, effect."
            )
        return Toleration(
            key=raw["key"], operator=raw.get("operator", "Exists"), value=raw.get("value"), effect=raw.get("effect")
        )
    if not raw:
        raise DeploymentConfigError("An empty toleration was given; use KEY[=VALUE][:EFFECT].")
    return Toleration.parse(raw)
