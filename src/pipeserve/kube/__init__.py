"""Kubernetes delivery: pure manifest builders, strict schema checks, and the one cluster client.

Public API::

    from pipeserve.kube import DeploymentSpec, build_inference_service, to_yaml
    isvc = build_inference_service(card, "s3://models/iris/", DeploymentSpec(target="triton-cpu"))
    print(to_yaml(isvc))

What KServe accepts is written once in :mod:`pipeserve.kube.kserve` (facts) and
:mod:`pipeserve.kube.admission` (rules). Builders are pure and import nothing beyond the standard
library (:mod:`pipeserve.kube.builder`, :mod:`pipeserve.kube.render`); cluster I/O lives only in
:mod:`pipeserve.kube.client`; strict validation lives in :mod:`pipeserve.kube.schema`.
"""

from pipeserve.kube.builder import (
    PickleWarning,
    build_inference_service,
    build_s3_credentials,
    files_digest,
    inference_service_labels,
    keda_query,
    lineage_annotations,
    to_yaml,
    v2_model_name,
)
from pipeserve.kube.spec import (
    AUTOSCALERS,
    MODES,
    SCALE_METRICS,
    TARGETS,
    DeploymentConfigError,
    DeploymentSpec,
    Toleration,
)

__all__ = [
    "AUTOSCALERS",
    "MODES",
    "SCALE_METRICS",
    "TARGETS",
    "DeploymentConfigError",
    "DeploymentSpec",
    "PickleWarning",
    "Toleration",
    "build_inference_service",
    "build_s3_credentials",
    "files_digest",
    "inference_service_labels",
    "keda_query",
    "lineage_annotations",
    "to_yaml",
    "v2_model_name",
]
