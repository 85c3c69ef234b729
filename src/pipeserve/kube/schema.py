"""Strict, offline validation of Kubernetes manifests, KServe kinds first.

A KServe document (InferenceService, ServingRuntime, ClusterServingRuntime) passes two checks:

1. **CRD schema, strict.** The KServe CRDs' openAPIV3Schema, converted to JSON Schema with every
   object closed (``additionalProperties: false``) the way kubectl's ``fieldValidation=Strict``
   rejects unknown fields. Types, enums (``scaleMetric``...) and quantity patterns come from it.
   The converted schemas are vendored in ``schemas/kserve-crds.json.gz`` (see ``_vendor_crds.py``).
2. **Admission rules** that KServe's webhook enforces, or that silently break serving
   (:mod:`pipeserve.kube.admission`).

Kubeflow Pipelines' Pipeline kinds, and the subset of PodMonitor/TriggerAuthentication fields the
chart writes, are closed schemas kept as data in ``schemas/*.json``. Built-in kinds
(ServiceAccount, Role, Pod, ...) go to ``kubernetes-validate --strict``'s bundled schemas for
Kubernetes 1.34 (kubectl 1.34.5 is the pinned client).

Drift: the kserve 0.21 SDK knows ``spec.tracing`` and ``predictor.schedulingGroup``; the vendored
CRD (KServe v0.20.0, the newest served as a Go module) does not. Such documents fail check 1 with a
message saying so, since a cluster with that CRD rejects them too.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeserve.errors import ConfigError, PipeserveError
from pipeserve.kube.admission import isvc_problems
from pipeserve.kube.kserve import QUANTITY

SCHEMAS = Path(__file__).with_name("schemas")
SCHEMA_FILE = SCHEMAS / "kserve-crds.json.gz"
KUBERNETES_VERSION = "1.34.0"
KSERVE_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"),
}
KFP_API_VERSION = "pipelines.kubeflow.org/v2beta1"
# Fields the kserve 0.21 SDK has but the vendored CRD lacks (see the module docstring).
DRIFT_FIELDS = {"tracing", "schedulingGroup"}


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
            "`make vendor-crds`."
        ) from exc


@functools.cache
def _data(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


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
def _validator(source: str, key: str) -> Any:
    """A Draft 7 validator for one kind, with the strict ObjectMeta plugged in."""
    schema = dict(crd_schemas()[key] if source == "crd" else _data(source)["kinds"][key])
    schema["properties"] = dict(schema["properties"], metadata=_data("object-meta.json"))
    return _jsonschema().Draft7Validator(schema)


def validate(doc: Mapping[str, Any], *, require_builtin_check: bool = True) -> list[str]:
    """Check one manifest strictly; return the problems found (an empty list means valid).

    Args:
        doc: A parsed manifest (a dict as ``yaml.safe_load`` returns it).
        require_builtin_check: Built-in kinds are checked with kubernetes-validate (a test
            dependency). If it is not installed: True reports that as a problem, False lets the
            document pass unchecked (the CLI's choice: its built-in objects come from the builder).

    Returns:
        One line per problem, each starting with the field path.
    """
    if not isinstance(doc, Mapping):
        return [f"<document>: expected a mapping (a Kubernetes object), got {type(doc).__name__}"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["<document>: apiVersion and kind must both be set to strings"]
    if api_version == KFP_API_VERSION and kind in _data("kfp.json")["kinds"]:
        return _dedupe(_kfp_errors(doc, kind))
    if f"{api_version}/{kind}" in _data("subsets.json")["kinds"]:
        return _dedupe(_schema_errors(doc, "subsets.json", f"{api_version}/{kind}"))
    if (api_version, kind) not in KSERVE_KINDS:
        if api_version.startswith("serving.kserve.io/"):
            known = ", ".join(f"{a} {k}" for a, k in sorted(KSERVE_KINDS))
            return [f"<document>: no schema for {api_version} {kind}; pipeserve validates {known}"]
        return _builtin_errors(doc, require_builtin_check)
    errors = _schema_errors(doc, "crd", f"{api_version}/{kind}")
    if kind == "InferenceService":
        errors += isvc_problems(doc)
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
    meta = doc.get("metadata")
    name = meta.get("name", "?") if isinstance(meta, Mapping) else "?"
    return f"{doc.get('kind', '?')}/{name}"


def _schema_errors(doc: Mapping[str, Any], source: str, key: str) -> list[str]:
    out = []
    for err in sorted(_validator(source, key).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        message = err.message
        if err.validator == "additionalProperties":
            drift = sorted(DRIFT_FIELDS & set(_unexpected(err)))
            if drift:
                message += (
                    f" ({', '.join(drift)} exist in the kserve 0.21 SDK but not in the KServe CRD this check uses; "
                    "check that your cluster's CRD has them before using them)"
                )
        elif err.validator == "pattern" and err.validator_value == QUANTITY.pattern:
            message = f"{err.instance!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)"
        out.append(f"{_path(err.absolute_path)}: {message}")
    return out


def _unexpected(err: Any) -> list[str]:
    instance = err.instance if isinstance(err.instance, Mapping) else {}
    allowed = set(err.schema.get("properties", {}))
    return [k for k in instance if k not in allowed]


def _kfp_errors(doc: Mapping[str, Any], kind: str) -> list[str]:
    out = _schema_errors(doc, "kfp.json", kind)
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    if kind == "PipelineVersion":
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        for key, message in (("pipelineSpec", pipeline_spec_pb2.PipelineSpec),
                             ("platformSpec", pipeline_spec_pb2.PlatformSpec)):
            if isinstance(spec.get(key), Mapping):
                try:
                    json_format.ParseDict(spec[key], message())
                except json_format.ParseError as exc:
                    out.append(f"spec.{key}: not a valid KFP {message.__name__}: {exc}")
    return out


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


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"


def _dedupe(errors: list[str]) -> list[str]:
    seen: set[str] = set()
    return [e for e in errors if not (e in seen or seen.add(e))]
