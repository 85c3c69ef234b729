"""Every combination pipeserve refuses because KServe would, written once.

Each case is one refused combination of deployment options. test_refusals.py asserts it three
ways: ``DeploymentSpec.from_options`` raises, ``helm template`` of the chart fails, and the strict
schema check flags a hand-written InferenceService; the cluster tests add a fourth, KServe's own
webhook on the local control plane (``kserve=True``), or show that KServe accepts it
(``kserve=False``: pipeserve is stricter, because KServe would silently ignore or clamp it).

For the scaling rules (pipeserve.kube.admission) the expected message is computed from the rule
itself with each surface's Words, so the three surfaces are proven to say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# DeploymentSpec option -> the chart value that expresses it.
CHART_KEYS = {
    "min_replicas": "replicas.min", "max_replicas": "replicas.max", "mode": "deploymentMode",
    "autoscaler": "autoscaling.autoscaler", "scale_metric": "autoscaling.metric", "scale_target": "autoscaling.target",
    "canary_traffic_percent": "canaryTrafficPercent", "target": "target", "gpus": "gpu.count", "name": "name",
}
MODE = ("metadata", "annotations", "serving.kserve.io/deploymentMode")
AUTOSCALER = ("metadata", "annotations", "serving.kserve.io/autoscalerClass")
PREDICTOR = ("spec", "predictor")


@dataclass(frozen=True)
class Refusal:
    """One refused combination.

    Args:
        spec: DeploymentSpec options (the chart gets the same values through CHART_KEYS).
        isvc: Edits that make a valid InferenceService (built for ``base``) express the
            combination: ``{path tuple: value}``; None when an InferenceService cannot express it.
        kserve: True when KServe's webhook or CRD refuses it too; False when pipeserve is stricter.
        fragment: For rules outside pipeserve.kube.admission: text every surface's message holds.
        fragments: Per-surface overrides of ``fragment`` ("spec", "chart", "isvc").
        chart: Whether the chart's values can express it.
        base: Target of the valid InferenceService the ``isvc`` edits start from.
    """

    spec: dict[str, Any]
    isvc: dict[tuple[Any, ...], Any] | None
    kserve: bool
    fragment: str | None = None
    fragments: dict[str, str] = field(default_factory=dict)
    chart: bool = True
    base: str = "triton-cpu"

    def chart_args(self) -> list[str]:
        args = []
        for key, value in self.spec.items():
            args += ["--set", f"{CHART_KEYS[key]}={value}"]
        return args


REFUSALS: dict[str, Refusal] = {
    # --- the scaling rules (pipeserve.kube.admission); messages computed from the rules --------------
    "min > max": Refusal(dict(min_replicas=4), {(*PREDICTOR, "minReplicas"): 4}, kserve=True),
    "max below 1": Refusal(dict(autoscaler="none", min_replicas=0, max_replicas=0), None, kserve=False,
                           fragments={"chart": "at '/replicas/max': minimum: got 0, want 1"}),
    "scale to zero with the HPA": Refusal(dict(min_replicas=0), {(*PREDICTOR, "minReplicas"): 0}, kserve=False),
    "canary in Standard mode": Refusal(dict(canary_traffic_percent=10), {(*PREDICTOR, "canaryTrafficPercent"): 10},
                                       kserve=False),
    "rps with the HPA": Refusal(dict(scale_metric="rps"), {(*PREDICTOR, "scaleMetric"): "rps"}, kserve=True),
    "cpu with the KPA": Refusal(dict(mode="Knative", scale_metric="cpu"),
                                {MODE: "Knative", AUTOSCALER: None, (*PREDICTOR, "scaleMetric"): "cpu"}, kserve=True),
    "cpu target over 100": Refusal(dict(scale_target=150), {(*PREDICTOR, "scaleTarget"): 150}, kserve=True),
    "KPA in Standard mode": Refusal(dict(autoscaler="kpa"), {AUTOSCALER: "kpa"}, kserve=True,
                                    fragments={"isvc": "'kpa' is not one of ['hpa', 'keda', 'external', 'none']"}),
    "KEDA in Knative mode": Refusal(dict(mode="Knative", autoscaler="keda"),
                                    {MODE: "Knative", AUTOSCALER: "keda", (*PREDICTOR, "scaleMetric"): None,
                                     (*PREDICTOR, "scaleTarget"): None}, kserve=False),
    "HPA in Knative mode": Refusal(dict(mode="Knative", autoscaler="hpa"), None, kserve=False),
    "fixed replicas that differ": Refusal(dict(autoscaler="none"),
                                          {AUTOSCALER: "none", (*PREDICTOR, "scaleMetric"): None,
                                           (*PREDICTOR, "scaleTarget"): None}, kserve=False),
    "metric with fixed replicas": Refusal(dict(autoscaler="none", scale_metric="cpu", min_replicas=3), None,
                                          kserve=False),
    "canary over 100": Refusal(dict(mode="Knative", canary_traffic_percent=120),
                               {MODE: "Knative", AUTOSCALER: None, (*PREDICTOR, "scaleMetric"): None,
                                (*PREDICTOR, "canaryTrafficPercent"): 120}, kserve=False,
                               fragments={"chart": "at '/canaryTrafficPercent'"}),
    # --- pipeserve.kube.spec / the chart's own rules, and names, schemes and enums ----------------------
    "GPU with sklearnserver": Refusal(
        dict(target="sklearnserver", gpus=1), {(*PREDICTOR, "model", "runtime"): "kserve-sklearnserver"}, kserve=False,
        fragment="A GPU with the sklearnserver runtime would sit idle: scikit-learn predicts on the CPU",
        base="triton-gpu",
    ),
    "GPU on triton-cpu": Refusal(dict(target="triton-cpu", gpus=1), None, kserve=False,
                                 fragment="Target triton-cpu runs without a GPU but 1 GPU(s) were requested"),
    "triton-gpu without a GPU": Refusal(dict(gpus=0), None, kserve=False,
                                        fragment="Target triton-gpu needs at least one GPU; use target triton-cpu"),
    "keda GPU metric without a GPU": Refusal(
        dict(target="triton-cpu", autoscaler="keda", scale_metric="gpu-utilization"), None, kserve=False,
        fragment="The keda gpu-utilization metric (DCGM) needs a GPU target"),
    "keda queue time without Triton": Refusal(
        dict(target="pipeserve", autoscaler="keda", scale_metric="triton-queue-time"), None, kserve=False,
        fragment="The keda triton-queue-time metric comes from Triton; target pipeserve does not export it"),
    "name not a DNS-1035 label": Refusal(
        dict(name="9iris"), {("metadata", "name"): "9iris"}, kserve=True,
        fragment="'9iris' is not a DNS-1123 label starting with a letter",
        fragments={"chart": "at '/name': '9iris' does not match pattern"}),
    "legacy mode name": Refusal(
        dict(mode="Serverless"), {MODE: "Serverless", AUTOSCALER: None, (*PREDICTOR, "scaleMetric"): None},
        kserve=False,
        fragments={"spec": "'Serverless' was renamed to 'Knative' in KServe 0.16",
                   "chart": "at '/deploymentMode': value must be one of",
                   "isvc": "'Serverless' is the pre-0.16 name; use 'Knative'"}),
    "qps (an old docs typo)": Refusal(
        dict(scale_metric="qps"), {(*PREDICTOR, "scaleMetric"): "qps"}, kserve=True,
        fragments={"spec": "the CRD only accepts 'rps'", "chart": "at '/autoscaling/metric': value must be one of",
                   "isvc": "'qps' is not one of ['cpu', 'memory', 'concurrency', 'rps']"}),
}
