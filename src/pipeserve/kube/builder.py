"""Pure builders: model card + deployment spec -> kubectl-ready KServe manifests (plain dicts).

Manifests are written as plain data with the camelCase keys kubectl expects; the strict check
(:mod:`pipeserve.kube.schema`, the vendored KServe CRD with unknown fields refused) proves every
field name and type, so no SDK model classes are needed. Nothing here imports more than the
standard library (PyYAML for :func:`to_yaml`), so the pipeline's emit step installs nothing else.

Nothing in this module touches a cluster; see :mod:`pipeserve.kube.client` for that.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from pipeserve import runtimes
from pipeserve.kube import kserve
from pipeserve.kube.spec import DeploymentConfigError, DeploymentSpec, check_name
from pipeserve.modelcard import (  # noqa: F401  (files_digest re-exported: pipeserve.kube)
    ANNOTATION_PREFIX,
    LINEAGE_REVISION,
    LINEAGE_RUN_ID,
    ONNX_FILE,
    ModelCard,
    files_digest,
)

ROLLOUT_ANNOTATION = ANNOTATION_PREFIX + "model-files-sha256"
PART_OF = "pipeserve"
# Files the stock sklearnserver runtime can load (it joblib.load()s exactly one of them).
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# Metrics worth a glance on `kubectl describe`; the full set stays in the model card.
KEY_METRICS = ("accuracy", "f1_macro", "roc_auc", "log_loss", "rmse", "mae", "r2")


class PickleWarning(UserWarning):
    """The chosen runtime unpickles the model file: loading it runs code from the model bucket."""


def v2_model_name(card: ModelCard, spec: DeploymentSpec) -> str:
    """Return the model name under which the runtime serves the model over the v2 protocol.

    Triton names a model after its folder in the model repository (``card.name``), whatever the
    InferenceService is called; sklearnserver and the pipeserve runtime are started with
    ``--model_name={{.Name}}``, i.e. the InferenceService name.
    """
    if spec.target.startswith("triton"):
        return card.name
    return spec.name or card.name


def build_inference_service(card: ModelCard, storage_uri: str, spec: DeploymentSpec | None = None) -> dict[str, Any]:
    """Build the InferenceService that serves ``card``'s model from ``storage_uri``.

    Args:
        card: The packaged model's card (name, version, files, metrics, lineage).
        storage_uri: URI of the model *repository* (the folder holding ``<card.name>/``), e.g.
            ``s3://models/iris/``. For the sklearnserver target the builder points KServe at the
            version folder holding the joblib file.
        spec: Deployment choices; None means the defaults (triton-gpu, Standard, HPA).

    Returns:
        The manifest as a plain dict with camelCase keys, ready for ``yaml.safe_dump``/kubectl.

    Raises:
        DeploymentConfigError: a refused combination, a bad name or storage URI, or a model
            directory that the target cannot serve.
        RuntimeIncompatible: the runtime's ONNX Runtime cannot load the model's ONNX file.
    """
    spec = (spec or DeploymentSpec()).resolved()
    name = spec.name or card.name
    check_name(name)
    _check_storage_uri(storage_uri)
    if runtimes.loads_onnx(spec.runtime):
        target = runtimes.onnx_target(spec.runtime, spec.runtime_version)
        runtimes.check_loadable(card.onnx, target, f"{card.name} v{card.version}")
    model_uri = storage_uri
    model_format = {"name": "onnx", "version": "1"}
    artifact = _find_file(card, ONNX_FILE)
    if spec.target == "sklearnserver":
        artifact = _pickle_file(card)
        # sklearnserver loads exactly one pickle from the folder storageUri points at.
        folder = artifact.rsplit("/", 1)[0] if "/" in artifact else ""
        model_uri = f"{storage_uri.rstrip('/')}/{card.name}/{folder}".rstrip("/") + "/"
        model_format = {"name": "sklearn", "version": "1"}
        warnings.warn(
            f"Target sklearnserver makes KServe joblib.load() {artifact}: unpickling runs arbitrary code from "
            "the model bucket. Give the training pipeline alone write access to it, or serve the ONNX model "
            "(target triton-cpu / pipeserve) instead.",
            PickleWarning,
            stacklevel=2,
        )

    labels = inference_service_labels(card, name)
    # Explicit mode: KServe's install default is Knative, and the mode cannot change after creation.
    annotations: dict[str, str] = {kserve.ANNOTATION_MODE: spec.mode}
    if spec.autoscaler in ("hpa", "keda", "none"):
        annotations[kserve.ANNOTATION_AUTOSCALER] = spec.autoscaler
    if spec.prometheus_scraping:
        annotations[kserve.ANNOTATION_SCRAPING] = "true"
    annotations.update(lineage_annotations(card, spec, artifact))
    annotations[ANNOTATION_PREFIX + "v2-model-path"] = f"/v2/models/{v2_model_name(card, spec)}"

    requests = {"cpu": spec.cpu_request, "memory": spec.memory_request}
    limits = {"cpu": spec.cpu_limit, "memory": spec.memory_limit}
    if spec.gpus:
        # Extended resources are scheduled on limits; the request defaults to the limit.
        limits[spec.gpu_resource] = str(spec.gpus)

    model: dict[str, Any] = {
        "modelFormat": model_format,
        "runtime": spec.runtime,
        "runtimeVersion": spec.runtime_version,
        "protocolVersion": "v2",
        "storageUri": model_uri,
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    predictor: dict[str, Any] = {"model": _drop_none(model)}
    # Key order follows the CRD's, which is also what kubectl prints.
    extension: dict[str, Any] = {
        # Copied onto the pods: a new model with the same storageUri still rolls the Deployment.
        "annotations": {ROLLOUT_ANNOTATION: files_digest(card.files)},
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "canaryTrafficPercent": spec.canary_traffic_percent,
        "nodeSelector": dict(spec.node_selector) if spec.node_selector else None,
        "runtimeClassName": spec.runtime_class_name,
        "serviceAccountName": spec.service_account_name,
        "tolerations": [t.to_dict() for t in spec.tolerations] if spec.tolerations else None,
    }
    if spec.autoscaler in ("hpa", "kpa"):
        extension["scaleMetric"] = spec.scale_metric
        extension["scaleTarget"] = spec.scale_target
    elif spec.autoscaler == "keda":
        query = keda_query(spec.scale_metric or "", name, spec.namespace, card.name)
        extension["autoScaling"] = {"metrics": [{
            "type": "External",
            "external": {
                "metric": {"backend": "prometheus", "serverAddress": spec.prometheus_url, "query": query},
                "target": {"type": "Value", "value": str(spec.scale_target)},
            },
        }]}
    predictor.update(_drop_none(extension))
    return {
        "apiVersion": kserve.API_VERSION,
        "kind": kserve.KIND,
        "metadata": _drop_none({"name": name, "namespace": spec.namespace, "labels": labels,
                                "annotations": annotations}),
        "spec": {"predictor": dict(sorted(predictor.items()))},
    }


def keda_query(metric: str, isvc_name: str, namespace: str | None, model_name: str) -> str:
    """Return the PromQL query KEDA evaluates for a ``keda`` scale metric.

    ``gpu-utilization`` averages DCGM's ``DCGM_FI_DEV_GPU_UTIL`` (percent) over the predictor's
    pods (the DCGM exporter labels series with the pod it serves when the GPU operator's
    pod-labels option is on). ``triton-queue-time`` is Triton's average queue time per request
    in milliseconds over the last minute.
    """
    ns = f'namespace="{namespace}",' if namespace else ""
    pods = f'pod=~"{isvc_name}-predictor-.*"'
    if metric == "gpu-utilization":
        return f"avg(DCGM_FI_DEV_GPU_UTIL{{{ns}{pods}}})"
    if metric == "triton-queue-time":
        sel = f'{{{ns}{pods},model="{model_name}"}}'
        return (
            f"sum(rate(nv_inference_queue_duration_us{sel}[1m])) / "
            f"clamp_min(sum(rate(nv_inference_request_success{sel}[1m])), 1) / 1000"
        )
    raise DeploymentConfigError(f"No KEDA query for scale metric {metric!r}; use gpu-utilization or triton-queue-time.")


def inference_service_labels(card: ModelCard, name: str) -> dict[str, str]:
    """Return the ``app.kubernetes.io/*`` labels (the same set the chart and the Kustomize base use)."""
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/version": _label_value(card.version),
        "app.kubernetes.io/managed-by": PART_OF,
    }


def lineage_annotations(card: ModelCard, spec: DeploymentSpec, artifact: str | None = None) -> dict[str, str]:
    """Return the lineage annotations: where the served model came from, checkable on the cluster.

    Args:
        card: The model card.
        spec: The spec (its pipeline_run_id/source_revision override the card's lineage).
        artifact: Path (relative to the model folder) of the file the runtime loads.
    """
    out = {
        ANNOTATION_PREFIX + "model-name": card.name,
        ANNOTATION_PREFIX + "model-version": str(card.version),
        ANNOTATION_PREFIX + "model-task": card.task,
        # One digest over every file of the model folder, so any change shows.
        ROLLOUT_ANNOTATION: files_digest(card.files),
    }
    if artifact and artifact in card.files:
        out[ANNOTATION_PREFIX + "artifact"] = artifact
        out[ANNOTATION_PREFIX + "artifact-sha256"] = card.files[artifact]
    metrics = {k: round(float(card.metrics[k]), 4) for k in KEY_METRICS if _is_number(card.metrics.get(k))}
    if metrics:
        out[ANNOTATION_PREFIX + "metrics"] = json.dumps(metrics, sort_keys=True, separators=(",", ":"))
    if card.data.get("fingerprint"):
        out[ANNOTATION_PREFIX + "data-fingerprint"] = str(card.data["fingerprint"])
    run_id = spec.pipeline_run_id or card.lineage.get(LINEAGE_RUN_ID)
    if run_id:
        out[ANNOTATION_PREFIX + "pipeline-run-id"] = str(run_id)
    revision = spec.source_revision or card.lineage.get(LINEAGE_REVISION)
    if revision:
        out[ANNOTATION_PREFIX + "source-revision"] = str(revision)
    return out


def build_s3_credentials(
    name: str,
    *,
    access_key_id: str,
    secret_access_key: str,
    endpoint: str | None = None,
    region: str | None = None,
    use_https: bool = True,
    verify_ssl: bool = True,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Build the Secret + ServiceAccount pair KServe's storage initializer reads S3 credentials from.

    KServe finds the Secret through the predictor's ``serviceAccountName`` and reads the
    ``serving.kserve.io/s3-*`` annotations on it. Put the returned ServiceAccount's name in
    ``DeploymentSpec.service_account_name``.

    Args:
        name: Name of both objects.
        access_key_id: ``AWS_ACCESS_KEY_ID``.
        secret_access_key: ``AWS_SECRET_ACCESS_KEY``.
        endpoint: S3 endpoint host[:port] without scheme (e.g. ``minio-service.kubeflow:9000``);
            None for AWS.
        region: Bucket region.
        use_https: Whether the endpoint speaks HTTPS.
        verify_ssl: Whether to verify the endpoint's certificate.
        namespace: Namespace of both objects.

    Returns:
        ``[Secret, ServiceAccount]`` as camelCase dicts.
    """
    check_name(name)
    if not access_key_id or not secret_access_key:
        raise DeploymentConfigError(
            "S3 credentials need both an access key id and a secret access key (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY); got an empty value."
        )
    if endpoint and "://" in endpoint:
        raise DeploymentConfigError(
            f"The S3 endpoint is host[:port] without a scheme (KServe adds it from use_https); got {endpoint!r}."
        )
    annotations = {
        "serving.kserve.io/s3-usehttps": "1" if use_https else "0",
        "serving.kserve.io/s3-verifyssl": "1" if verify_ssl else "0",
    }
    if endpoint:
        annotations["serving.kserve.io/s3-endpoint"] = endpoint
    if region:
        annotations["serving.kserve.io/s3-region"] = region
    labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": PART_OF}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _drop_none({"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}),
        "stringData": {"AWS_ACCESS_KEY_ID": access_key_id, "AWS_SECRET_ACCESS_KEY": secret_access_key},
        "type": "Opaque",
    }
    account = {
        "apiVersion": "v1",
        # The model server does not talk to the API server; only the storage initializer reads the Secret.
        "automountServiceAccountToken": False,
        "kind": "ServiceAccount",
        "metadata": _drop_none({"name": name, "namespace": namespace, "labels": labels}),
        "secrets": [{"name": name}],
    }
    return [secret, account]


def to_yaml(doc_or_docs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """Serialize one manifest, or several as a multi-document YAML stream, in kubectl's style.

    Keys keep their insertion order (apiVersion, kind, metadata, spec), and long strings are not
    folded, so the output diffs cleanly.
    """
    import yaml

    docs = [doc_or_docs] if isinstance(doc_or_docs, Mapping) else list(doc_or_docs)
    return yaml.safe_dump_all(
        [_plain(d) for d in docs], sort_keys=False, default_flow_style=False, width=10_000, explicit_start=len(docs) > 1
    )


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


def _plain(value: Any) -> Any:
    # PyYAML's safe dumper refuses tuples and mapping proxies; give it plain containers.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_storage_uri(uri: str) -> None:
    if not kserve.storage_scheme_ok(uri):
        raise DeploymentConfigError(
            f"Storage URI {uri!r} is not one KServe's storage initializer can fetch; use s3://, gs://, pvc://, "
            "https:// (or another KServe-supported scheme) pointing at the model repository folder. "
            "KFP's minio:// URIs are s3:// URIs on the MinIO endpoint."
        )


def _find_file(card: ModelCard, basename: str) -> str | None:
    matches = sorted(p for p in card.files if p.rsplit("/", 1)[-1] == basename)
    preferred = [p for p in matches if p.split("/", 1)[0] == str(card.version)]
    return (preferred or matches or [None])[0]


def _pickle_file(card: ModelCard) -> str:
    pickles = sorted(p for p in card.files if p.endswith(PICKLE_SUFFIXES))
    if len(pickles) != 1:
        got = "none" if not pickles else ", ".join(pickles)
        raise DeploymentConfigError(
            f"Target sklearnserver loads exactly one .joblib/.pkl/.pickle file, but model {card.name!r} lists "
            f"{got} (pipeserve packages ONNX + skops, never pickle). Serve the ONNX model with target "
            "triton-cpu or pipeserve; or, if you accept unpickling, export the estimator yourself "
            "(joblib.dump(skops.io.load('model.skops', trusted=[...]), '<version>/model.joblib')), re-package "
            "so the card lists the file, and run this again."
        )
    return pickles[0]


def _label_value(value: Any) -> str:
    text = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(value))[:63]
    return text.strip("-_.") or "unknown"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
