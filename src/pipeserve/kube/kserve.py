"""What KServe accepts: the facts every pipeserve check reads, written once.

The deployment spec (:mod:`pipeserve.kube.spec`), the admission rules (:mod:`pipeserve.kube.admission`),
the strict schema check (:mod:`pipeserve.kube.schema`), the builder and packaging all take their
names, enums and patterns from here. The Helm chart's ``validateValues`` restates them in Go
templates; ``tests/kube/refusals.py`` holds every refused combination once and proves all
surfaces refuse it, and the cluster tests prove KServe's own webhook agrees.

Sources: KServe ``pkg/constants/constants.go``, ``pkg/apis/serving/v1beta1`` (validation) and
``pkg/controller/v1beta1/inferenceservice/utils/utils.go`` (storage schemes), v0.20-v0.21.
"""

from __future__ import annotations

import re

from pipeserve.errors import ConfigError
from pipeserve.names import (  # noqa: F401  (re-exported: KServe's name rules)
    is_dns1123_label,
    is_dns1123_subdomain,
    name_problem,
)

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"

ANNOTATION_MODE = "serving.kserve.io/deploymentMode"
ANNOTATION_AUTOSCALER = "serving.kserve.io/autoscalerClass"
ANNOTATION_SCRAPING = "serving.kserve.io/enable-prometheus-scraping"
ANNOTATION_KNATIVE_CLASS = "autoscaling.knative.dev/class"
KNATIVE_HPA_CLASS = "hpa.autoscaling.knative.dev"

STANDARD, KNATIVE = "Standard", "Knative"
# The modes pipeserve writes; the webhook also knows ModelMesh.
MODES = (STANDARD, KNATIVE)
SERVER_MODES = (*MODES, "ModelMesh")
# Renamed in KServe 0.16 (PR #4608); the webhook still rewrites the old values.
LEGACY_MODES = {"RawDeployment": STANDARD, "Serverless": KNATIVE}
# What KServe creates for each component in Knative mode (Standard mode: an apps/v1 Deployment).
KNATIVE_SERVICE = ("serving.knative.dev/v1", "Service")

# The serving.kserve.io/autoscalerClass values the webhook accepts (kpa is implicit in Knative mode).
AUTOSCALER_CLASSES = ("hpa", "keda", "external", "none")
# What a pipeserve user chooses: the classes plus kpa, Knative mode's own autoscaler.
AUTOSCALERS = ("hpa", "kpa", "keda", "none")
# The scaleMetric each autoscaler takes (the CRD enum is cpu, memory, concurrency, rps; no "qps").
SCALE_METRICS: dict[str, tuple[str, ...]] = {
    "hpa": ("cpu", "memory"),  # HPA: Resource metrics only (KServe #4259)
    "kpa": ("concurrency", "rps"),
    "keda": (),  # KEDA takes autoScaling.metrics, not scaleMetric
    "none": (),
    "external": (),
}
PERCENT_METRICS = ("cpu", "memory")

PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v1", "grpc-v2")
# Runtime -> the protocols it serves (the ones pipeserve pins).
RUNTIME_PROTOCOLS = {"kserve-tritonserver": ("v2", "grpc-v2")}
# What the storage initializer fetches without a ClusterStorageContainer ("/" is a local path).
STORAGE_SCHEMES = (
    "gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://", "webhdfs://",
    "oci://", "oci+native://", "oci+fetch://", "hf://", "/",
)
# Resource names KServe treats as GPUs (serving.kserve.io/gpu-resource-types defaults, plus MIG).
GPU_RESOURCE_SUFFIX = "/gpu"
GPU_RESOURCE_PREFIXES = ("nvidia.com/mig",)

# Kubernetes name and value formats (names: pipeserve.names).
QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# resource.Quantity, the same pattern the CRD schema enforces.
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


class DeploymentConfigError(ConfigError):
    """A deployment spec that a KServe cluster would reject, or that could not work as asked."""


def default_autoscaler(mode: str) -> str:
    """KServe's autoscaler when none is named: the Knative Pod Autoscaler in Knative mode, else the HPA."""
    return "kpa" if mode == KNATIVE else "hpa"


def is_gpu_resource(name: str) -> bool:
    return name.endswith(GPU_RESOURCE_SUFFIX) or name.startswith(GPU_RESOURCE_PREFIXES)




def storage_scheme_ok(uri: str) -> bool:
    return bool(uri) and uri.startswith(STORAGE_SCHEMES)
