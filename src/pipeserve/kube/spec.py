"""The typed deployment spec: what to deploy where, checked before any YAML is written.

A :class:`DeploymentSpec` holds every choice the InferenceService builder needs. Building one is
cheap and pure; :meth:`DeploymentSpec.check` refuses the combinations a KServe 0.21 cluster would
reject (or silently ignore), each with a message naming the fix, so nothing broken is ever
written. ``None`` in a field means "the target's default", resolved by :meth:`DeploymentSpec.resolved`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeserve.kube import admission, scheduling
from pipeserve.kube.kserve import (
    AUTOSCALERS,
    LEGACY_MODES,
    MODES,
    QUALIFIED_NAME,
    QUANTITY,
    STANDARD,
    DeploymentConfigError,
    default_autoscaler,
    is_dns1123_label,
    is_dns1123_subdomain,
    name_problem,
)
from pipeserve.kube.scheduling import Toleration, parse_node_selector, parse_toleration
from pipeserve.runtimes import TARGET_RUNTIMES

__all__ = ["DeploymentConfigError", "DeploymentSpec", "Toleration", "check_name"]

TARGETS = tuple(TARGET_RUNTIMES)
# The metric each autoscaler takes on the command line: KServe's scaleMetric for hpa/kpa; for keda
# a Prometheus query pipeserve writes (see builder.keda_query).
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
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


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
            kwargs["node_selector"] = parse_node_selector(node_selector)
        if tolerations is not None:
            kwargs["tolerations"] = tuple(parse_toleration(t) for t in tolerations)
        spec = cls(**kwargs)
        spec.check()
        return spec

    # ---- defaults ---------------------------------------------------------------------------

    @property
    def runtime(self) -> str:
        """Name of the (Cluster)ServingRuntime the target pins."""
        return TARGET_RUNTIMES[self.target]

    @property
    def effective_autoscaler(self) -> str:
        return self.autoscaler or default_autoscaler(self.mode)

    @property
    def effective_gpus(self) -> int:
        return self.gpus if self.gpus is not None else (1 if self.target == "triton-gpu" else 0)

    @property
    def effective_metric(self) -> str | None:
        return self.scale_metric or (SCALE_METRICS.get(self.effective_autoscaler) or (None,))[0]

    def resolved(self) -> DeploymentSpec:
        """Return a copy with every None default filled in for this target and mode (checked)."""
        if self._resolved:
            return self
        self.check()
        scale_metric = self.effective_metric
        scale_target = self.scale_target
        if scale_target is None and scale_metric is not None:
            scale_target = DEFAULT_SCALE_TARGETS[scale_metric]
        gpus = self.effective_gpus
        node_selector, tolerations = self.node_selector, self.tolerations
        if gpus > 0:
            if node_selector is None:
                node_selector = dict(DEFAULT_GPU_NODE_SELECTOR)
            if tolerations is None:
                tolerations = (Toleration(key=self.gpu_resource),)
        cpu_req, cpu_lim, mem_req, mem_lim = _RESOURCE_DEFAULTS[self.target]
        return dataclasses.replace(
            self,
            autoscaler=self.effective_autoscaler,
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

    def scaling(self) -> admission.Scaling:
        """The spec as KServe sees it, for the shared admission rules (keda's metric is pipeserve's own)."""
        autoscaler = self.effective_autoscaler
        return admission.Scaling(
            mode=self.mode,
            autoscaler=autoscaler,
            metric=self.scale_metric if autoscaler != "keda" else None,
            target=self.scale_target if autoscaler != "keda" else None,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            canary_traffic_percent=self.canary_traffic_percent,
        )

    # ---- refusals ---------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse combinations a KServe 0.21 cluster would reject or silently not honour.

        The rules run in order (see ``_RULES``); the first refusal is raised.

        Raises:
            DeploymentConfigError: with a message saying what was asked, why it cannot work and
                what to use instead.
        """
        for rule in _RULES:
            problem = rule(self)
            if problem:
                raise DeploymentConfigError(problem)


# ---- the rules, in the order check() applies them; each returns a message or None -----------


def _known_choices(s: DeploymentSpec) -> str | None:
    if s.target not in TARGETS:
        return f"Unknown target {s.target!r}; valid targets are: {', '.join(TARGETS)}."
    if s.mode not in MODES:
        hint = LEGACY_MODES.get(s.mode)
        extra = f" ({s.mode!r} was renamed to {hint!r} in KServe 0.16)" if hint else ""
        return f"Unknown deployment mode {s.mode!r}{extra}; valid modes are: {', '.join(MODES)}."
    if s.effective_autoscaler not in AUTOSCALERS:
        return f"Unknown autoscaler {s.effective_autoscaler!r}; valid autoscalers are: {', '.join(AUTOSCALERS)}."
    return None


def _names(s: DeploymentSpec) -> str | None:
    if s.name is not None and (problem := name_problem(s.name)):
        return f"InferenceService name {s.name!r} is {problem}."
    if s.namespace is not None and not is_dns1123_label(s.namespace):
        return (f"Namespace {s.namespace!r} is not a DNS-1123 label (lower-case letters, digits and '-', starting and "
                "ending with a letter or digit, at most 63 characters).")
    for label in ("runtime_class_name", "service_account_name"):
        value = getattr(s, label)
        if value is not None and not is_dns1123_subdomain(value):
            return f"{label} {value!r} is not a DNS-1123 subdomain."
    return None


def _kserve_admission(s: DeploymentSpec) -> str | None:
    found = admission.problems(s.scaling(), admission.SPEC_WORDS)
    return found[0].message if found else None


def _keda_metric(s: DeploymentSpec) -> str | None:
    """keda's metrics are Prometheus queries pipeserve writes: each needs what it measures."""
    if s.effective_autoscaler != "keda" or s.mode != STANDARD:
        return None
    metric = s.effective_metric
    if s.scale_metric is not None and s.scale_metric not in SCALE_METRICS["keda"]:
        others = [a for a, ms in SCALE_METRICS.items() if s.scale_metric in ms]
        where = f"; {s.scale_metric!r} belongs to the {others[0]} autoscaler" if others else ""
        return (f"Scale metric {s.scale_metric!r} is not allowed with the keda autoscaler in Standard mode{where}; "
                f"allowed: {', '.join(SCALE_METRICS['keda'])}.")
    if s.scale_target is not None and s.scale_target < 1:
        return f"scale_target must be a positive integer; got {s.scale_target}."
    if metric == "gpu-utilization" and s.scale_target is not None and s.scale_target > 100:
        return f"scale_target for {metric} is a percentage (1..100); got {s.scale_target}."
    if metric == "gpu-utilization" and s.effective_gpus == 0:
        return ("The keda gpu-utilization metric (DCGM) needs a GPU target; use triton-queue-time with Triton, or "
                "the hpa autoscaler on cpu for CPU targets.")
    if metric == "triton-queue-time" and not s.target.startswith("triton"):
        return (f"The keda triton-queue-time metric comes from Triton; target {s.target} does not export it. Use "
                "the hpa autoscaler on cpu instead.")
    return None


def _gpus_fit_target(s: DeploymentSpec) -> str | None:
    gpus = s.effective_gpus
    if gpus < 0:
        return f"gpus must be 0 or more; got {gpus}."
    if gpus > 0 and (problem := admission.gpu_idle_problem(s.runtime)):
        return problem
    if s.target == "triton-cpu" and gpus > 0:
        return f"Target triton-cpu runs without a GPU but {gpus} GPU(s) were requested; use target triton-gpu."
    if s.target == "triton-gpu" and gpus == 0:
        return "Target triton-gpu needs at least one GPU; use target triton-cpu to serve ONNX on CPUs."
    if not QUALIFIED_NAME.match(s.gpu_resource):
        return f"gpu_resource {s.gpu_resource!r} is not a resource name like 'nvidia.com/gpu'."
    return None


def _quantities(s: DeploymentSpec) -> str | None:
    for label in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        value = getattr(s, label)
        if value is not None and not QUANTITY.match(str(value)):
            return f"{label} {value!r} is not a Kubernetes quantity; use forms like '500m', '2', '512Mi', '4Gi'."
    return None


def _scheduling(s: DeploymentSpec) -> str | None:
    return scheduling.node_selector_problem(s.node_selector) or scheduling.tolerations_problem(s.tolerations)


def _prometheus(s: DeploymentSpec) -> str | None:
    if not s.prometheus_url.startswith(("http://", "https://")):
        return f"prometheus_url must be an http(s) URL; got {s.prometheus_url!r}."
    return None


_RULES = (_known_choices, _names, _kserve_admission, _keda_metric, _gpus_fit_target, _quantities, _scheduling,
          _prometheus)


def check_name(name: str) -> None:
    """Refuse an InferenceService name KServe would reject (a DNS-1035 label, at most 63 characters).

    Raises:
        DeploymentConfigError: the name is not valid.
    """
    if problem := name_problem(name):
        raise DeploymentConfigError(f"InferenceService name {name!r} is {problem}.")
