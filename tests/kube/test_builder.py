"""The InferenceService builder: every target renders, validates strictly, and carries lineage."""

from __future__ import annotations

import warnings

import pytest
import yaml

from pipeserve.kube import (
    DeploymentConfigError,
    DeploymentSpec,
    PickleWarning,
    Toleration,
    build_inference_service,
    build_s3_credentials,
    files_digest,
    to_yaml,
)
from pipeserve.kube.schema import validate

from .conftest import make_card

URI = "s3://models/iris/"

VALID_SPECS = {
    "triton-gpu default": DeploymentSpec(),
    "triton-gpu keda gpu-util scale-to-zero": DeploymentSpec(autoscaler="keda", min_replicas=0, namespace="ml"),
    "triton-gpu keda queue time": DeploymentSpec(autoscaler="keda", scale_metric="triton-queue-time", scale_target=20),
    "triton-gpu knative kpa": DeploymentSpec(mode="Knative", min_replicas=0, canary_traffic_percent=10),
    "triton-gpu 2 gpus custom": DeploymentSpec(
        gpus=2,
        gpu_resource="nvidia.com/mig-1g.10gb",
        node_selector={"pool": "gpu"},
        tolerations=(Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule"),),
        runtime_class_name="nvidia",
        runtime_version="24.08-py3",
    ),
    "triton-cpu": DeploymentSpec(target="triton-cpu"),
    "triton-cpu memory hpa": DeploymentSpec(target="triton-cpu", scale_metric="memory", scale_target=70),
    "triton-cpu keda queue": DeploymentSpec(target="triton-cpu", autoscaler="keda", scale_metric="triton-queue-time"),
    "pipeserve cpu": DeploymentSpec(target="pipeserve", service_account_name="model-reader"),
    "pipeserve gpu": DeploymentSpec(target="pipeserve", gpus=1),
    "pipeserve knative rps": DeploymentSpec(target="pipeserve", mode="Knative", scale_metric="rps", scale_target=50),
    "pipeserve fixed": DeploymentSpec(target="pipeserve", autoscaler="none", min_replicas=2, max_replicas=2),
    "renamed": DeploymentSpec(target="triton-cpu", name="iris-prod", namespace="models", cpu_request="250m"),
}


def _keys(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k
            if k not in ("annotations", "labels", "limits", "requests", "nodeSelector"):
                yield from _keys(v, f"{path}.{k}")
    elif isinstance(node, list):
        for v in node:
            yield from _keys(v, path)


@pytest.mark.parametrize("spec", VALID_SPECS.values(), ids=VALID_SPECS.keys())
def test_every_target_renders_a_strictly_valid_inference_service(card, spec):
    doc = build_inference_service(card, URI, spec)
    assert validate(doc) == []
    # kubectl wants camelCase: a snake_case key means to_dict() leaked in.
    assert [(p, k) for p, k in _keys(doc) if "_" in k] == []
    # The YAML round-trips to the same document.
    assert yaml.safe_load(to_yaml(doc)) == doc


def test_default_is_the_design_target(card):
    doc = build_inference_service(card, URI)
    meta, pred = doc["metadata"], doc["spec"]["predictor"]
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert meta["name"] == "iris"
    assert meta["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert meta["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert pred["model"]["modelFormat"] == {"name": "onnx", "version": "1"}
    assert pred["model"]["runtime"] == "kserve-tritonserver"
    assert pred["model"]["protocolVersion"] == "v2"
    assert pred["model"]["storageUri"] == URI
    assert pred["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pred["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pred["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (pred["minReplicas"], pred["maxReplicas"], pred["scaleMetric"], pred["scaleTarget"]) == (1, 3, "cpu", 80)
    assert "name" not in pred["model"]  # the SDK's empty container name is dropped


def test_triton_cpu_has_no_gpu_anywhere(card):
    doc = build_inference_service(card, URI, DeploymentSpec(target="triton-cpu"))
    text = to_yaml(doc)
    assert "gpu" not in text.replace("pipeserve.dev", "")
    assert doc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"


def test_pipeserve_target_pins_the_project_runtime(card):
    doc = build_inference_service(card, URI, DeploymentSpec(target="pipeserve", gpus=1))
    model = doc["spec"]["predictor"]["model"]
    assert model["runtime"] == "pipeserve-runtime"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_knative_mode_uses_kpa_and_canary(card):
    doc = build_inference_service(card, URI, DeploymentSpec(mode="Knative", canary_traffic_percent=25, min_replicas=0))
    pred = doc["spec"]["predictor"]
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert "serving.kserve.io/autoscalerClass" not in doc["metadata"]["annotations"]
    assert (pred["scaleMetric"], pred["canaryTrafficPercent"], pred["minReplicas"]) == ("concurrency", 25, 0)


def test_keda_gpu_utilization_writes_an_external_prometheus_metric(card):
    doc = build_inference_service(card, URI, DeploymentSpec(autoscaler="keda", namespace="ml", min_replicas=0))
    pred = doc["spec"]["predictor"]
    assert doc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    assert "scaleMetric" not in pred  # KServe rejects scaleMetric with KEDA
    (metric,) = pred["autoScaling"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["backend"] == "prometheus"
    assert metric["external"]["metric"]["query"] == 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="ml",pod=~"iris-predictor-.*"})'
    assert metric["external"]["target"] == {"type": "Value", "value": "70"}


def test_keda_triton_queue_time_query_names_the_triton_model(card):
    spec = DeploymentSpec(name="iris-prod", autoscaler="keda", scale_metric="triton-queue-time")
    query = build_inference_service(card, URI, spec)["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]
    assert 'model="iris"' in query["metric"]["query"] and "nv_inference_queue_duration_us" in query["metric"]["query"]
    assert 'pod=~"iris-prod-predictor-.*"' in query["metric"]["query"]
    assert query["target"]["value"] == "50"


def test_triton_v2_model_name_is_the_repository_folder_not_the_isvc(card):
    triton = build_inference_service(card, URI, DeploymentSpec(name="iris-prod"))
    assert triton["metadata"]["name"] == "iris-prod"
    assert triton["metadata"]["annotations"]["pipeserve.dev/v2-model-path"] == "/v2/models/iris"
    own = build_inference_service(card, URI, DeploymentSpec(target="pipeserve", name="iris-prod"))
    assert own["metadata"]["annotations"]["pipeserve.dev/v2-model-path"] == "/v2/models/iris-prod"


def test_lineage_annotations_and_labels(card):
    doc = build_inference_service(card, URI, DeploymentSpec(target="triton-cpu", source_revision="feedbeef"))
    ann, labels = doc["metadata"]["annotations"], doc["metadata"]["labels"]
    assert ann["pipeserve.dev/model-name"] == "iris"
    assert ann["pipeserve.dev/model-version"] == "1"
    assert ann["pipeserve.dev/artifact"] == "1/model.onnx"
    assert ann["pipeserve.dev/artifact-sha256"] == "b" * 64
    assert ann["pipeserve.dev/model-files-sha256"] == files_digest(card.files)
    assert ann["pipeserve.dev/data-fingerprint"] == "sha256:" + "f" * 64
    assert ann["pipeserve.dev/pipeline-run-id"] == "run-42"  # from the card
    assert ann["pipeserve.dev/source-revision"] == "feedbeef"  # the spec overrides the card
    assert yaml.safe_load(ann["pipeserve.dev/metrics"]) == {
        "accuracy": 0.9667, "f1_macro": 0.9665, "log_loss": 0.11, "roc_auc": 0.998,
    }
    assert labels == {
        "app.kubernetes.io/name": "pipeserve",
        "app.kubernetes.io/instance": "iris",
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": "pipeserve",
        "app.kubernetes.io/version": "1",
        "app.kubernetes.io/managed-by": "pipeserve",
    }


def test_files_digest_changes_with_any_file():
    assert files_digest({"a": "1" * 64}) != files_digest({"a": "2" * 64})
    assert files_digest({"a": "1", "b": "2"}) == files_digest({"b": "2", "a": "1"})


def test_sklearnserver_refuses_a_model_dir_without_a_pickle(card):
    with pytest.raises(DeploymentConfigError) as info:
        build_inference_service(card, URI, DeploymentSpec(target="sklearnserver"))
    message = str(info.value)
    assert "exactly one .joblib/.pkl/.pickle file" in message and "lists none" in message
    assert "triton-cpu or pipeserve" in message and "joblib.dump" in message


def test_sklearnserver_with_a_joblib_warns_and_points_at_the_version_folder():
    card = make_card(files={"config.pbtxt": "a" * 64, "1/model.onnx": "b" * 64, "1/model.joblib": "d" * 64})
    with pytest.warns(PickleWarning, match="unpickling runs arbitrary code"):
        doc = build_inference_service(card, URI, DeploymentSpec(target="sklearnserver"))
    model = doc["spec"]["predictor"]["model"]
    assert model["storageUri"] == "s3://models/iris/iris/1/"
    assert model["runtime"] == "kserve-sklearnserver"
    assert model["modelFormat"] == {"name": "sklearn", "version": "1"}
    assert "nvidia.com/gpu" not in model["resources"]["limits"]
    assert doc["metadata"]["annotations"]["pipeserve.dev/artifact-sha256"] == "d" * 64
    assert doc["metadata"]["annotations"]["pipeserve.dev/v2-model-path"] == "/v2/models/iris"
    assert validate(doc) == []


def test_other_targets_do_not_warn(card):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_inference_service(card, URI, DeploymentSpec(target="triton-cpu"))


@pytest.mark.parametrize(
    "uri", ["minio://mlpipeline/v2/artifacts/model", "models/iris", ""], ids=["minio", "relative", "empty"]
)
def test_storage_uri_scheme_is_checked(card, uri):
    with pytest.raises(DeploymentConfigError, match="is not one KServe's storage initializer can fetch"):
        build_inference_service(card, uri)


def test_card_name_that_is_not_a_dns_label_is_refused_with_a_suggestion():
    with pytest.raises(DeploymentConfigError, match=r"'Iris_Model' is not a DNS-1123 label.*try 'iris-model'"):
        build_inference_service(make_card(name="Iris_Model"), URI)


def test_s3_credentials_pair_in_kserve_annotation_format():
    secret, account = build_s3_credentials(
        "minio-creds", access_key_id="minio", secret_access_key="minio123",
        endpoint="minio-service.kubeflow:9000", region="us-east-1", use_https=False, namespace="ml",
    )
    assert secret["kind"] == "Secret" and account["kind"] == "ServiceAccount"
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio-service.kubeflow:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-verifyssl": "1",
        "serving.kserve.io/s3-region": "us-east-1",
    }
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio123"}
    assert account["secrets"] == [{"name": "minio-creds"}]
    assert account["automountServiceAccountToken"] is False
    assert validate(secret) == [] and validate(account) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"access_key_id": "", "secret_access_key": "x"}, "need both an access key id and a secret access key"),
        ({"access_key_id": "a", "secret_access_key": "b", "endpoint": "http://minio:9000"}, "without a scheme"),
    ],
)
def test_s3_credentials_refusals(kwargs, message):
    with pytest.raises(DeploymentConfigError, match=message):
        build_s3_credentials("creds", **kwargs)


def test_to_yaml_writes_a_multi_document_stream(card):
    docs = [build_inference_service(card, URI), *build_s3_credentials("c", access_key_id="a", secret_access_key="b")]
    text = to_yaml(docs)
    assert text.startswith("---") and [d["kind"] for d in yaml.safe_load_all(text)] == [
        "InferenceService", "Secret", "ServiceAccount",
    ]
    assert not to_yaml(docs[0]).startswith("---")


def test_importing_the_builder_api_stays_light():
    # The CLI imports pipeserve.kube for --help; kserve (seconds to import) loads only when building.
    import subprocess
    import sys

    code = ("import sys, pipeserve.kube; "
            "print(sorted(m for m in ('kserve', 'kubernetes', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
