"""Strict, offline validation of Kubernetes manifests, KServe kinds first.

Three layers check a KServe document (InferenceService, ServingRuntime, ClusterServingRuntime):

1. **CRD schema, strict.** The KServe CRDs' openAPIV3Schema, converted to JSON Schema with every
   object closed (``additionalProperties: false``) the way kubectl's ``fieldValidation=Strict``
   rejects unknown fields. Types, enums (``scaleMetric``...) and quantity patterns come from it.
   The converted schemas are vendored in ``crd_schemas.json.gz`` (see ``_vendor_crds.py``).
2. **kserve 0.21 SDK models.** Every key must be a field of the matching ``kserve``/``kubernetes``
   Python model (``attribute_map``), i.e. "no field unknown to the kserve 0.21 SDK".
3. **Admission rules** that KServe's webhook enforces (or that silently break serving):
   annotation enums, ``protocolVersion``, min <= max replicas, the metric each autoscaler takes,
   canary only in Knative mode, scale-to-zero only with KPA/KEDA, pinned runtimes.

Built-in kinds (ServiceAccount, Role, Pod, ...) go to ``kubernetes-validate --strict``'s bundled
schemas for Kubernetes 1.34 (kubectl 1.34.5 is the pinned client).

Drift: the kserve 0.21 SDK knows ``spec.tracing`` and ``predictor.schedulingGroup``, the vendored
CRD (kserve master 2026-08-21, identical to v0.20.0) does not; such documents fail layer 1 with a
message saying so, since a cluster with that CRD would reject them too.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeserve.errors import ConfigError, PipeserveError
from pipeserve.kube.spec import QUANTITY_RE

SCHEMA_FILE = Path(__file__).with_name("crd_schemas.json.gz")
KUBERNETES_VERSION = "1.34.0"
QUANTITY_PATTERN = QUANTITY_RE.pattern
KSERVE_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
}
# Kubeflow Pipelines' Pipeline/PipelineVersion CRDs (kubeflow/pipelines
# manifests/kustomize/base/crds, v2beta1), closed like the KServe ones. Pipeline.spec.displayName
# is written by the kfp 2.17 SDK's kubernetes_manifest_format and accepted by KFP >= 2.5.
# pipelineSpec/platformSpec are preserve-unknown-fields in the CRD; they are checked by parsing
# them into the KFP protobuf messages instead.
KFP_SCHEMAS: dict[str, dict[str, Any]] = {
    "Pipeline": {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"displayName": {"type": "string"}, "description": {"type": "string"}},
            },
        },
    },
    "PipelineVersion": {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["pipelineSpec"],
                "properties": {
                    "codeSourceURL": {"type": "string"},
                    "description": {"type": "string"},
                    "displayName": {"type": "string"},
                    "pipelineName": {"type": "string"},
                    "pipelineSpec": {"type": "object"},
                    "pipelineSpecURI": {"type": "string"},
                    "platformSpec": {"type": "object"},
                },
            },
        },
    },
}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
# The optional monitoring/autoscaling pieces of the chart, whose CRDs are not vendored: closed
# schemas of the SUBSET of fields pipeserve writes (field names from prometheus-operator's
# monitoring.coreos.com/v1 PodMonitor and KEDA's keda.sh/v1alpha1 TriggerAuthentication). A field
# outside the subset is reported, so anything new gets checked against the real CRD by hand first.
SUBSET_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "podMetricsEndpoints"],
                "properties": {
                    "selector": _LABEL_SELECTOR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
                    },
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "path": {"type": "string", "pattern": "^/"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                                "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                            },
                        },
                    },
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["parameter", "name", "key"],
                            "properties": {
                                "parameter": {"type": "string", "minLength": 1},
                                "name": {"type": "string", "minLength": 1},
                                "key": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                },
            },
        },
    },
}
DEPLOYMENT_MODES = ("Standard", "Knative", "ModelMesh")
LEGACY_MODES = {"RawDeployment": "Standard", "Serverless": "Knative"}
AUTOSCALER_CLASSES = ("hpa", "keda", "external", "none")
PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v1", "grpc-v2")
STORAGE_SCHEMES = (
    "gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://", "webhdfs://",
    "oci://", "oci+native://", "oci+fetch://", "hf://", "/",
)
# Fields the kserve 0.21 SDK has but the vendored CRD lacks (see the module docstring).
DRIFT_FIELDS = {"tracing", "schedulingGroup"}
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED = r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

# Strict ObjectMeta for the fields a manifest may carry (server-set fields are refused: a
# manifest that carries uid/resourceVersion was copied from a cluster and will not apply cleanly).
OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS1123_SUBDOMAIN.pattern},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": f"^{_QUALIFIED}$", "maxLength": 316},
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE},
        },
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": f"^{_QUALIFIED}$"},
            "additionalProperties": {"type": "string"},
        },
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


class ManifestInvalid(ConfigError):
    """A manifest fails the strict checks; the message lists every problem found."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


@functools.cache
def crd_schemas() -> dict[str, Any]:
    """Return the vendored strict JSON Schemas, keyed ``group/version/Kind`` (loaded once)."""
    try:
        return json.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
    except FileNotFoundError as exc:  # pragma: no cover - a broken install
        raise ConfigError(
            f"The vendored CRD schemas are missing ({SCHEMA_FILE}). Reinstall pipeserve, or regenerate them with "
            "`python -m pipeserve.kube._vendor_crds <dir with the KServe CRD YAMLs>`."
        ) from exc


def _jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # a runtime dependency of pipeserve; only a broken install lacks it
        raise PipeserveError(
            "Strict manifest validation needs jsonschema; install pipeserve with its dependencies "
            "(pip install jsonschema==4.26.0)."
        ) from exc
    return jsonschema


@functools.cache
def _validator(key: str) -> Any:
    jsonschema = _jsonschema()
    schema = dict(crd_schemas()[key])
    schema["properties"] = dict(schema["properties"], metadata=OBJECT_META_SCHEMA)
    return jsonschema.Draft7Validator(schema)


def validate(doc: Mapping[str, Any], *, require_builtin_check: bool = True) -> list[str]:
    """Check one manifest strictly; return the problems found (an empty list means valid).

    Args:
        doc: A parsed manifest (a dict as ``yaml.safe_load`` returns it).
        require_builtin_check: Built-in kinds are checked with kubernetes-validate (a test
            dependency). If it is not installed: True reports that as a problem, False lets the
            document pass unchecked (the CLI's choice: its built-in objects come from typed models).

    Returns:
        One line per problem, each starting with the field path.
    """
    if not isinstance(doc, Mapping):
        return [f"<document>: expected a mapping (a Kubernetes object), got {type(doc).__name__}"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["<document>: apiVersion and kind must both be set to strings"]
    if api_version == "pipelines.kubeflow.org/v2beta1" and kind in KFP_SCHEMAS:
        return _dedupe(_kfp_errors(doc, kind))
    if (api_version, kind) in SUBSET_SCHEMAS:
        return _dedupe(_closed_errors(doc, SUBSET_SCHEMAS[(api_version, kind)]))
    sdk_model = KSERVE_KINDS.get((api_version, kind))
    if sdk_model is None:
        if api_version.startswith("serving.kserve.io/"):
            known = ", ".join(f"{a} {k}" for a, k in KSERVE_KINDS)
            return [f"<document>: no schema for {api_version} {kind}; pipeserve validates {known}"]
        return _builtin_errors(doc, require_builtin_check)
    group_version = api_version
    errors = _crd_errors(doc, f"{group_version}/{kind}")
    errors += _sdk_errors(doc, sdk_model, "")
    if kind == "InferenceService":
        errors += _isvc_rules(doc)
    return _dedupe(errors)


def validate_or_raise(doc: Mapping[str, Any]) -> None:
    """Like :func:`validate`, but raise :class:`ManifestInvalid` listing the problems."""
    errors = validate(doc)
    if errors:
        raise ManifestInvalid(f"{describe(doc)} is invalid: " + "; ".join(errors), errors)


def validate_all(docs: Iterable[Mapping[str, Any] | None], *, require_builtin_check: bool = True) -> list[str]:
    """Validate several documents (``None`` entries from empty YAML documents are skipped).

    Returns:
        Problems prefixed with ``Kind/name: ``.
    """
    out: list[str] = []
    for doc in docs:
        if doc is None:
            continue
        out += [f"{describe(doc)}: {e}" for e in validate(doc, require_builtin_check=require_builtin_check)]
    return out


def describe(doc: Any) -> str:
    """Return ``Kind/name`` for messages."""
    if not isinstance(doc, Mapping):
        return "<document>"
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), Mapping) else "?"
    return f"{doc.get('kind', '?')}/{name}"


# ---- layer 1: CRD schema ---------------------------------------------------------------------


def _crd_errors(doc: Mapping[str, Any], key: str) -> list[str]:
    out = []
    for err in sorted(_validator(key).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = _path(err.absolute_path)
        message = err.message
        if err.validator == "additionalProperties":
            drift = sorted(DRIFT_FIELDS & set(_unexpected(err)))
            if drift:
                message += (
                    f" ({', '.join(drift)} exist in the kserve 0.21 SDK but not in the KServe CRD this check uses; "
                    "check that your cluster's CRD has them before using them)"
                )
        elif err.validator == "pattern" and err.validator_value == QUANTITY_PATTERN:
            message = f"{err.instance!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)"
        out.append(f"{path}: {message}")
    return out


def _unexpected(err: Any) -> list[str]:
    instance = err.instance if isinstance(err.instance, Mapping) else {}
    allowed = set(err.schema.get("properties", {}))
    return [k for k in instance if k not in allowed]


def _closed_errors(doc: Mapping[str, Any], schema: dict[str, Any]) -> list[str]:
    jsonschema = _jsonschema()

    schema = dict(schema)
    schema["properties"] = dict(schema["properties"], metadata=OBJECT_META_SCHEMA)
    validator = jsonschema.Draft7Validator(schema)
    return [f"{_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def _kfp_errors(doc: Mapping[str, Any], kind: str) -> list[str]:
    out = _closed_errors(doc, KFP_SCHEMAS[kind])
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    if kind == "PipelineVersion":
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        for key, message in (("pipelineSpec", pipeline_spec_pb2.PipelineSpec), ("platformSpec", pipeline_spec_pb2.PlatformSpec)):
            if isinstance(spec.get(key), Mapping):
                try:
                    json_format.ParseDict(spec[key], message())
                except json_format.ParseError as exc:
                    out.append(f"spec.{key}: not a valid KFP {message.__name__}: {exc}")
    return out


# ---- layer 2: kserve / kubernetes SDK models ---------------------------------------------------

_PRIMITIVES = {"str", "int", "float", "bool", "object", "date", "datetime", "long"}


@functools.cache
def _sdk_class(type_name: str) -> Any:
    from pipeserve._protos import share_inference_protos

    share_inference_protos()  # kserve and tritonclient.grpc in one process
    import kserve.models
    import kubernetes.client.models

    return getattr(kserve.models, type_name, None) or getattr(kubernetes.client.models, type_name, None)


def _sdk_errors(value: Any, type_name: str, path: str) -> list[str]:
    if type_name.startswith("list[") and type_name.endswith("]"):
        if not isinstance(value, list):
            return []  # the CRD layer reports the type error
        return [e for i, v in enumerate(value) for e in _sdk_errors(v, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("dict(") and type_name.endswith(")"):
        if not isinstance(value, Mapping):
            return []
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return [e for k, v in value.items() for e in _sdk_errors(v, inner, f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        return []
    cls = _sdk_class(type_name)
    if cls is None or not isinstance(value, Mapping):
        # A type the SDK names but does not ship (e.g. the autoscaling/v2 behaviour) cannot be
        # walked; the CRD layer still checks it.
        return []
    by_json_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    out = []
    for key, sub in value.items():
        attr = by_json_key.get(key)
        where = f"{path}.{key}" if path else key
        if attr is None:
            out.append(f"{where}: field unknown to the kserve 0.21 SDK model {type_name}")
            continue
        out += _sdk_errors(sub, cls.openapi_types[attr], where)
    return out


# ---- layer 3: admission rules --------------------------------------------------------------------


def _isvc_rules(doc: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    name = meta.get("name")
    if isinstance(name, str) and (not _DNS1035.match(name) or len(name) > 63):
        out.append(
            f"metadata.name: {name!r} is not a valid InferenceService name (a DNS-1123 label starting with a letter)"
        )
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    mode = annotations.get("serving.kserve.io/deploymentMode")
    if mode is None:
        out.append(
            "metadata.annotations: serving.kserve.io/deploymentMode is not set; KServe's install default "
            "(Knative) would decide and cannot be changed later. Set Standard or Knative explicitly"
        )
    elif mode in LEGACY_MODES:
        out.append(
            f"metadata.annotations.serving.kserve.io/deploymentMode: {mode!r} is the pre-0.16 name; use "
            f"{LEGACY_MODES[mode]!r}"
        )
    elif mode not in DEPLOYMENT_MODES:
        out.append(
            f"metadata.annotations.serving.kserve.io/deploymentMode: {mode!r} is not one of {list(DEPLOYMENT_MODES)}"
        )
    autoscaler = annotations.get("serving.kserve.io/autoscalerClass")
    if autoscaler is not None and autoscaler not in AUTOSCALER_CLASSES:
        out.append(
            f"metadata.annotations.serving.kserve.io/autoscalerClass: {autoscaler!r} is not one of "
            f"{list(AUTOSCALER_CLASSES)}"
        )
    knative = mode in ("Knative", "Serverless")
    knative_hpa = annotations.get("autoscaling.knative.dev/class") == "hpa.autoscaling.knative.dev"
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    if spec.get("canary") and knative:
        out.append("spec.canary: canary rollouts (spec.canary) are only supported in Standard deployment mode")
    for component in ("predictor", "transformer", "explainer"):
        comp = spec.get(component)
        if isinstance(comp, Mapping):
            out += _component_rules(comp, f"spec.{component}", knative, knative_hpa, autoscaler or "hpa")
    return out


def _component_rules(comp: Mapping[str, Any], path: str, knative: bool, knative_hpa: bool, autoscaler: str) -> list[str]:
    out: list[str] = []
    lo, hi = comp.get("minReplicas"), comp.get("maxReplicas")
    ints = isinstance(lo, int) and isinstance(hi, int)
    if ints and hi > 0 and lo > hi:
        out.append(f"{path}: minReplicas ({lo}) is greater than maxReplicas ({hi})")
    metric = comp.get("scaleMetric")
    target = comp.get("scaleTarget")
    metrics = (comp.get("autoScaling") or {}).get("metrics") if isinstance(comp.get("autoScaling"), Mapping) else None
    if knative:
        if comp.get("deploymentStrategy") is not None:
            out.append(f"{path}.deploymentStrategy: only honoured in Standard mode")
        if metric is not None and metric not in ("concurrency", "rps") and not knative_hpa:
            out.append(
                f"{path}.scaleMetric: {metric!r} needs the HPA class in Knative mode; the Knative Pod Autoscaler "
                "takes concurrency or rps"
            )
    else:
        if comp.get("canaryTrafficPercent") is not None:
            out.append(
                f"{path}.canaryTrafficPercent: only honoured in Knative mode (it splits traffic between revisions); "
                "use spec.canary in Standard mode"
            )
        if autoscaler == "hpa":
            if metric is not None and metric not in ("cpu", "memory"):
                out.append(f"{path}.scaleMetric: the HPA in Standard mode takes cpu or memory, not {metric!r}")
            if metric in (None, "cpu") and isinstance(target, int) and not 1 <= target <= 100:
                out.append(f"{path}.scaleTarget: a cpu utilization target must be within 1..100, got {target}")
            if isinstance(lo, int) and lo == 0:
                out.append(
                    f"{path}.minReplicas: 0 is clamped to 1 by the HPA; scale to zero needs Knative mode or KEDA"
                )
            for i, m in enumerate(metrics or []):
                if isinstance(m, Mapping) and m.get("type") != "Resource":
                    out.append(
                        f"{path}.autoScaling.metrics[{i}].type: the hpa autoscaler takes Resource metrics only, "
                        f"got {m.get('type')!r}; use serving.kserve.io/autoscalerClass: keda"
                    )
        if autoscaler == "keda":
            if metric is not None:
                out.append(f"{path}.scaleMetric: not supported with KEDA; use autoScaling.metrics")
            for i, m in enumerate(metrics or []):
                ext = m.get("external") if isinstance(m, Mapping) else None
                if isinstance(ext, Mapping):
                    if not (ext.get("metric") or {}).get("query"):
                        out.append(f"{path}.autoScaling.metrics[{i}].external.metric.query: required with KEDA")
                    if not (ext.get("target") or {}).get("value"):
                        out.append(f"{path}.autoScaling.metrics[{i}].external.target.value: required with KEDA")
    model = comp.get("model")
    if isinstance(model, Mapping):
        out += _model_rules(model, f"{path}.model")
    return out


def _model_rules(model: Mapping[str, Any], path: str) -> list[str]:
    out: list[str] = []
    protocol = model.get("protocolVersion")
    if protocol is not None and protocol not in PROTOCOL_VERSIONS:
        out.append(f"{path}.protocolVersion: {protocol!r} is not one of {list(PROTOCOL_VERSIONS)}")
    runtime = model.get("runtime")
    if runtime is None:
        out.append(
            f"{path}.runtime: not set, so KServe auto-selects a runtime (sklearn + v2 silently goes to MLServer); "
            "pin it"
        )
    if runtime == "kserve-tritonserver" and protocol not in ("v2", "grpc-v2"):
        out.append(f"{path}.protocolVersion: kserve-tritonserver serves v2 or grpc-v2 only, got {protocol!r}")
    uri = model.get("storageUri")
    if isinstance(uri, str) and not uri.startswith(STORAGE_SCHEMES):
        out.append(f"{path}.storageUri: {uri!r} has a scheme KServe's storage initializer does not support")
    resources = model.get("resources") if isinstance(model.get("resources"), Mapping) else {}
    limits = resources.get("limits") if isinstance(resources.get("limits"), Mapping) else {}
    gpu_keys = [k for k in limits if k.endswith("/gpu") or k.startswith("nvidia.com/mig")]
    if runtime == "kserve-sklearnserver" and gpu_keys:
        out.append(
            f"{path}.resources.limits.{gpu_keys[0]}: a GPU with kserve-sklearnserver sits idle (scikit-learn "
            "predicts on the CPU); serve ONNX on kserve-tritonserver instead"
        )
    return out


# ---- built-in kinds ----------------------------------------------------------------------------


def _builtin_errors(doc: Mapping[str, Any], required: bool) -> list[str]:
    try:
        import kubernetes_validate
    except ImportError:
        if not required:
            return []
        return [
            f"<document>: {doc.get('apiVersion')} {doc.get('kind')} is a built-in kind; validating it needs "
            "kubernetes-validate (pip install kubernetes-validate==1.37.0)"
        ]
    try:
        kubernetes_validate.validate(dict(doc), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc.absolute_path)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"<document>: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes "
            f"{KUBERNETES_VERSION} (nor in the vendored KServe CRDs)"
        ]
    return []


# ---- helpers -----------------------------------------------------------------------------------


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"


def _dedupe(errors: list[str]) -> list[str]:
    seen: set[str] = set()
    return [e for e in errors if not (e in seen or seen.add(e))]
