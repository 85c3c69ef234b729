"""KServe's admission rules for a predictor's mode, autoscaling and replicas, written once.

KServe's validating webhook refuses (or its controllers silently ignore) some combinations of
deployment mode, autoscaler, scale metric, replicas and canary traffic. pipeserve meets them on
two surfaces: a :class:`~pipeserve.kube.spec.DeploymentSpec` before anything is rendered, and a
hand-written InferenceService in the strict schema check. Both describe the predictor as a
:class:`Scaling` and run :func:`problems`; each surface passes its own :class:`Words` so a message
names the field the reader wrote (``min_replicas`` on the CLI, ``minReplicas`` in YAML).

Rules marked ``stricter`` are pipeserve's own (KServe would accept and misbehave); the rest are
what the webhook enforces. ``tests/kube/refusals.py`` checks both claims against the real webhook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeserve.kube.kserve import (
    ANNOTATION_AUTOSCALER,
    ANNOTATION_KNATIVE_CLASS,
    ANNOTATION_MODE,
    AUTOSCALER_CLASSES,
    KNATIVE,
    KNATIVE_HPA_CLASS,
    LEGACY_MODES,
    MODES,
    PERCENT_METRICS,
    PROTOCOL_VERSIONS,
    RUNTIME_PROTOCOLS,
    SCALE_METRICS,
    SERVER_MODES,
    STANDARD,
    default_autoscaler,
    is_gpu_resource,
    name_problem,
    storage_scheme_ok,
)
from pipeserve.runtimes import SKLEARNSERVER


@dataclass(frozen=True)
class Scaling:
    """How one predictor asks to be run and scaled, in KServe's terms.

    Args:
        mode: ``Standard`` or ``Knative``.
        autoscaler: ``hpa``, ``kpa``, ``keda``, ``none`` or ``external``.
        metric: ``scaleMetric`` (None when unset).
        target: ``scaleTarget``.
        min_replicas: ``minReplicas`` (None when unset).
        max_replicas: ``maxReplicas`` (None when unset; KServe reads 0 as unset too).
        canary_traffic_percent: ``canaryTrafficPercent`` (Knative revisions).
        knative_hpa: Knative mode with the ``hpa.autoscaling.knative.dev`` class annotation.
    """

    mode: str
    autoscaler: str
    metric: str | None = None
    target: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    canary_traffic_percent: int | None = None
    knative_hpa: bool = False


@dataclass(frozen=True)
class Words:
    """What a surface calls each field, and how it says "switch to Knative mode"."""

    min_replicas: str
    max_replicas: str
    metric: str
    target: str
    canary: str
    use_knative: str
    use_standard: str


SPEC_WORDS = Words("min_replicas", "max_replicas", "Scale metric", "scale_target", "canaryTrafficPercent",
                   "use --mode Knative", "use --mode Standard")
# The Helm chart's values; its validateValues (charts/pipeserve/templates/_helpers.tpl) writes these
# very messages, which tests/kube/test_refusals.py compares word for word.
CHART_WORDS = Words("replicas.min", "replicas.max", "autoscaling.metric", "autoscaling.target", "canaryTrafficPercent",
                    "set deploymentMode: Knative", "set deploymentMode: Standard")
ISVC_WORDS = Words("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "canaryTrafficPercent",
                   "set serving.kserve.io/deploymentMode: Knative", "set serving.kserve.io/deploymentMode: Standard")


@dataclass(frozen=True)
class Problem:
    """One refusal: the field it concerns (a :class:`Words` attribute name or "mode"/"autoscaler")."""

    field: str
    message: str
    stricter: bool = False


Rule = Callable[[Scaling, Words], Iterator[Problem]]


def autoscaler_fits_mode(s: Scaling, w: Words) -> Iterator[Problem]:
    """kpa only in Knative mode, keda only in Standard mode, no HPA class in Knative mode."""
    if s.autoscaler == "kpa" and s.mode != KNATIVE:
        yield Problem("autoscaler", "The kpa autoscaler (Knative Pod Autoscaler) exists only in Knative mode; "
                      f"{w.use_knative}, or in Standard mode use hpa (cpu/memory) or keda (Prometheus metrics).")
    if s.autoscaler == "keda" and s.mode != STANDARD:
        yield Problem("autoscaler", "The keda autoscaler works only in Standard mode (KServe creates a KEDA "
                      f"ScaledObject for the Deployment); {w.use_standard}, or use kpa in Knative mode.")
    if s.autoscaler == "hpa" and s.mode == KNATIVE and not s.knative_hpa:
        yield Problem("autoscaler", "In Knative mode KServe scales with the Knative Pod Autoscaler: use autoscaler "
                      "kpa (scale metric concurrency or rps), or Standard mode for an HPA on cpu/memory.")


def metric_fits_autoscaler(s: Scaling, w: Words) -> Iterator[Problem]:
    """HPA: cpu/memory; KPA: concurrency/rps; KEDA and fixed replicas: no scaleMetric."""
    if s.metric is None:
        return
    allowed = SCALE_METRICS.get("hpa" if s.knative_hpa else s.autoscaler, ())
    if s.metric in allowed:
        return
    if s.autoscaler == "none":
        yield Problem("metric", "Autoscaler none keeps a fixed replica count and takes no scale metric; "
                      f"got {s.metric!r}.")
    elif s.autoscaler == "keda":
        yield Problem("metric", f"{w.metric} {s.metric!r} is not supported with KEDA; "
                      "KEDA scales on autoScaling.metrics.")
    else:
        hint = " ('qps' appears in old KServe docs; the CRD only accepts 'rps')" if s.metric == "qps" else ""
        owners = [a for a, ms in SCALE_METRICS.items() if s.metric in ms]
        where = f"; {s.metric!r} belongs to the {owners[0]} autoscaler" if owners else ""
        yield Problem("metric", f"{w.metric} {s.metric!r} is not allowed with the {s.autoscaler} autoscaler in "
                      f"{s.mode} mode{hint}{where}; allowed: {', '.join(allowed)}.")


def target_in_range(s: Scaling, w: Words) -> Iterator[Problem]:
    """A scale target is positive; for cpu and memory it is a percentage."""
    if s.target is None:
        return
    metric = s.metric or (SCALE_METRICS.get(s.autoscaler) or (None,))[0]
    if s.target < 1:
        yield Problem("target", f"{w.target} must be a positive integer; got {s.target}.")
    elif metric in PERCENT_METRICS and s.target > 100:
        yield Problem("target", f"{w.target} for {metric} is a percentage (1..100); got {s.target}.")


def replicas_in_order(s: Scaling, w: Words) -> Iterator[Problem]:
    """max >= 1, min >= 0 and min <= max."""
    lo, hi = s.min_replicas, s.max_replicas
    if hi is not None and hi < 1:
        yield Problem("max_replicas", f"{w.max_replicas} must be at least 1; got {hi}.")
    if lo is not None and lo < 0:
        yield Problem("min_replicas", f"{w.min_replicas} must be 0 or more; got {lo}.")
    if lo is not None and hi is not None and hi >= 1 and lo > hi:
        yield Problem("min_replicas", f"{w.min_replicas} ({lo}) is greater than {w.max_replicas} ({hi}); raise "
                      f"{w.max_replicas} or lower {w.min_replicas}.")


def scale_to_zero_possible(s: Scaling, w: Words) -> Iterator[Problem]:
    """minReplicas 0 needs Knative (KPA) or KEDA: the HPA clamps it to 1. (stricter: KServe clamps silently)"""
    if s.min_replicas == 0 and s.autoscaler in ("hpa", "none") and s.mode == STANDARD:
        yield Problem("min_replicas", f"{w.min_replicas} 0 (scale to zero) is impossible with the {s.autoscaler} "
                      "autoscaler: the HPA clamps it to 1 in Standard mode. Use Knative mode (KPA), or the keda "
                      f"autoscaler, or {w.min_replicas} >= 1.", stricter=True)


def fixed_replicas_are_fixed(s: Scaling, w: Words) -> Iterator[Problem]:
    """Autoscaler none runs min == max replicas. (stricter: KServe would run min)"""
    lo, hi = s.min_replicas, s.max_replicas
    if s.autoscaler == "none" and lo is not None and hi is not None and lo != hi:
        yield Problem("min_replicas", f"Autoscaler none runs a fixed number of replicas, but {w.min_replicas} ({lo}) "
                      f"!= {w.max_replicas} ({hi}); set them equal or pick an autoscaler.", stricter=True)


def canary_only_in_knative(s: Scaling, w: Words) -> Iterator[Problem]:
    """canaryTrafficPercent splits Knative revisions: Standard mode ignores it. (stricter: ignored silently)"""
    p = s.canary_traffic_percent
    if p is None:
        return
    if s.mode != KNATIVE:
        yield Problem("canary", f"{w.canary} splits traffic between Knative revisions and is only honoured in Knative "
                      f"mode; {w.use_knative}, or drop {w.canary} in Standard mode (spec.canary is Standard "
                      "mode's canary).", stricter=True)
    elif not 0 <= p <= 100:
        yield Problem("canary", f"{w.canary} must be within 0..100; got {p}.")


RULES: tuple[Rule, ...] = (
    autoscaler_fits_mode,
    metric_fits_autoscaler,
    target_in_range,
    replicas_in_order,
    scale_to_zero_possible,
    fixed_replicas_are_fixed,
    canary_only_in_knative,
)


def problems(scaling: Scaling, words: Words) -> list[Problem]:
    """Every rule's refusals of ``scaling``, in rule order."""
    return [p for rule in RULES for p in rule(scaling, words)]


# ---- a hand-written InferenceService ------------------------------------------------------------


def isvc_problems(doc: Mapping[str, Any]) -> list[str]:
    """The admission rules for an InferenceService document; one ``path: message`` line each."""
    out: list[str] = []
    meta = _mapping(doc.get("metadata"))
    name = meta.get("name")
    if isinstance(name, str) and (problem := name_problem(name)):
        out.append(f"metadata.name: {name!r} is {problem}; it is not a valid InferenceService name")
    annotations = _mapping(meta.get("annotations"))
    mode = annotations.get(ANNOTATION_MODE)
    where = f"metadata.annotations.{ANNOTATION_MODE}"
    if mode is None:
        out.append(f"metadata.annotations: {ANNOTATION_MODE} is not set; KServe's install default (Knative) would "
                   "decide and cannot be changed later. Set Standard or Knative explicitly")
    elif mode in LEGACY_MODES:
        out.append(f"{where}: {mode!r} is the pre-0.16 name; use {LEGACY_MODES[mode]!r}")
    elif mode not in SERVER_MODES:
        out.append(f"{where}: {mode!r} is not one of {list(SERVER_MODES)}")
    autoscaler = annotations.get(ANNOTATION_AUTOSCALER)
    if autoscaler is not None and autoscaler not in AUTOSCALER_CLASSES:
        out.append(f"metadata.annotations.{ANNOTATION_AUTOSCALER}: {autoscaler!r} is not one of "
                   f"{list(AUTOSCALER_CLASSES)}")
        autoscaler = None
    mode = LEGACY_MODES.get(mode, mode) if isinstance(mode, str) else STANDARD
    knative_hpa = annotations.get(ANNOTATION_KNATIVE_CLASS) == KNATIVE_HPA_CLASS or (
        mode == KNATIVE and autoscaler == "hpa")
    spec = _mapping(doc.get("spec"))
    if spec.get("canary") and mode == KNATIVE:
        out.append("spec.canary: canary rollouts (spec.canary) are only supported in Standard deployment mode")
    for component in ("predictor", "transformer", "explainer"):
        comp = spec.get(component)
        if isinstance(comp, Mapping):
            scaling = Scaling(
                mode=mode if mode in MODES else STANDARD,
                autoscaler=autoscaler or default_autoscaler(mode),
                metric=_int_or_none(comp.get("scaleMetric"), str),
                target=_int_or_none(comp.get("scaleTarget")),
                min_replicas=_int_or_none(comp.get("minReplicas")),
                max_replicas=_int_or_none(comp.get("maxReplicas")) or None,  # 0 means unset to KServe
                canary_traffic_percent=_int_or_none(comp.get("canaryTrafficPercent")),
                knative_hpa=knative_hpa,
            )
            path = f"spec.{component}"
            out += [f"{path}.{_ISVC_FIELDS[p.field]}: {p.message}" for p in problems(scaling, ISVC_WORDS)]
            out += _component_problems(comp, path, scaling)
    return out


_ISVC_FIELDS = {"autoscaler": "autoscalerClass", "metric": "scaleMetric", "target": "scaleTarget",
                "min_replicas": "minReplicas", "max_replicas": "maxReplicas", "canary": "canaryTrafficPercent"}


def _component_problems(comp: Mapping[str, Any], path: str, s: Scaling) -> list[str]:
    out: list[str] = []
    if s.mode == KNATIVE and comp.get("deploymentStrategy") is not None:
        out.append(f"{path}.deploymentStrategy: only honoured in Standard mode")
    metrics = _mapping(comp.get("autoScaling")).get("metrics") or []
    for i, m in enumerate(metrics if isinstance(metrics, list) else []):
        m = _mapping(m)
        if s.autoscaler == "hpa" and s.mode == STANDARD and m.get("type") != "Resource":
            out.append(f"{path}.autoScaling.metrics[{i}].type: the hpa autoscaler takes Resource metrics only, got "
                       f"{m.get('type')!r}; use {ANNOTATION_AUTOSCALER}: keda")
        external = m.get("external")
        if s.autoscaler == "keda" and isinstance(external, Mapping):
            if not _mapping(external.get("metric")).get("query"):
                out.append(f"{path}.autoScaling.metrics[{i}].external.metric.query: required with KEDA")
            if not _mapping(external.get("target")).get("value"):
                out.append(f"{path}.autoScaling.metrics[{i}].external.target.value: required with KEDA")
    model = comp.get("model")
    if isinstance(model, Mapping):
        out += _model_problems(model, f"{path}.model")
    return out


def _model_problems(model: Mapping[str, Any], path: str) -> list[str]:
    out: list[str] = []
    protocol = model.get("protocolVersion")
    if protocol is not None and protocol not in PROTOCOL_VERSIONS:
        out.append(f"{path}.protocolVersion: {protocol!r} is not one of {list(PROTOCOL_VERSIONS)}")
    runtime = model.get("runtime")
    if runtime is None:
        out.append(f"{path}.runtime: not set, so KServe auto-selects a runtime (sklearn + v2 silently goes to "
                   "MLServer); pin it")
    served = RUNTIME_PROTOCOLS.get(runtime)
    if served and protocol not in served:
        out.append(f"{path}.protocolVersion: {runtime} serves {' or '.join(served)} only, got {protocol!r}")
    uri = model.get("storageUri")
    if isinstance(uri, str) and not storage_scheme_ok(uri):
        out.append(f"{path}.storageUri: {uri!r} has a scheme KServe's storage initializer does not support")
    limits = _mapping(_mapping(model.get("resources")).get("limits"))
    gpus = [k for k in limits if is_gpu_resource(k)]
    if gpus and (message := gpu_idle_problem(runtime)):
        out.append(f"{path}.resources.limits.{gpus[0]}: {message}")
    return out


def gpu_idle_problem(runtime: str | None) -> str | None:
    """A GPU on the sklearn runtime sits idle: scikit-learn predicts on the CPU. (stricter)"""
    if runtime == SKLEARNSERVER:
        return ("A GPU with the sklearnserver runtime would sit idle: scikit-learn predicts on the CPU. Serve the "
                "ONNX model on a GPU with target triton-gpu (kserve-tritonserver), or drop the GPU.")
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int_or_none(value: Any, kind: type = int) -> Any:
    # Wrong types are the CRD schema's to report; the rules only read well-typed values.
    return value if isinstance(value, kind) and not isinstance(value, bool) else None
