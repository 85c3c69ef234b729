"""The strict checks: each layer accepts valid documents and demonstrably fails on broken ones."""

from __future__ import annotations

import copy
import gzip
import json

import pytest

from pipeserve.kube import DeploymentSpec, build_inference_service, schema
from pipeserve.kube.schema import ManifestInvalid, validate, validate_all, validate_or_raise

# The reference CRDs live in shared/ beside the checkout (CI lays a copy there too).


@pytest.fixture
def isvc(card):
    return build_inference_service(card, "s3://models/iris/", DeploymentSpec())


def _mutate(doc, path, value):
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def test_valid_document_passes(isvc):
    assert validate(isvc) == []
    validate_or_raise(isvc)


def test_typo_field_fails_the_strict_crd_check(isvc):
    bad = _mutate(isvc, ["spec", "predictor", "minReplica"], 1)
    errors = validate(bad)
    assert "spec.predictor: Additional properties are not allowed ('minReplica' was unexpected)" in errors
    deep = _mutate(isvc, ["spec", "predictor", "model", "runtimeVersoin"], "x")
    assert ("spec.predictor.model: Additional properties are not allowed ('runtimeVersoin' was unexpected)"
            in validate(deep))


def test_mis_cased_field_fails(isvc):
    bad = _mutate(isvc, ["spec", "predictor", "model", "storageURI"], "s3://x/")
    assert any("'storageURI' was unexpected" in e for e in validate(bad))


def test_scale_metric_qps_fails(isvc):
    errors = validate(_mutate(isvc, ["spec", "predictor", "scaleMetric"], "qps"))
    assert "spec.predictor.scaleMetric: 'qps' is not one of ['cpu', 'memory', 'concurrency', 'rps']" in errors


def test_bad_quantity_fails(isvc):
    errors = validate(_mutate(isvc, ["spec", "predictor", "model", "resources", "limits", "memory"], "1Gx"))
    assert errors == [
        "spec.predictor.model.resources.limits.memory: '1Gx' is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)"
    ]


def test_wrong_type_fails(isvc):
    errors = validate(_mutate(isvc, ["spec", "predictor", "minReplicas"], "one"))
    assert "spec.predictor.minReplicas: 'one' is not of type 'integer'" in errors


def test_metadata_is_strict(isvc):
    assert validate(_mutate(isvc, ["metadata", "labelz"], {})) != []
    assert any("labels" in e for e in validate(_mutate(isvc, ["metadata", "labels", "app"], 3)))
    assert "metadata: 'name' is a required property" in validate(_mutate(isvc, ["metadata"], {}))


def test_drift_fields_are_explained(isvc):
    errors = validate(_mutate(isvc, ["spec", "tracing"], {"exporter": "otlp"}))
    assert any("tracing exist in the kserve 0.21 SDK but not in the KServe CRD" in e for e in errors)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["metadata", "annotations", "serving.kserve.io/deploymentMode"], "RawDeployment",
         "pre-0.16 name; use 'Standard'"),
        (["metadata", "annotations", "serving.kserve.io/deploymentMode"], "Serverfull", "is not one of"),
        (["metadata", "annotations", "serving.kserve.io/autoscalerClass"], "kpa", "'kpa' is not one of"),
        (["spec", "predictor", "model", "protocolVersion"], "v3", "'v3' is not one of"),
        (["spec", "predictor", "minReplicas"], 5, "minReplicas (5) is greater than maxReplicas (3)"),
        (["spec", "predictor", "minReplicas"], 0, "the HPA clamps it to 1"),
        (["spec", "predictor", "scaleMetric"], "concurrency",
         "scaleMetric 'concurrency' is not allowed with the hpa autoscaler in Standard mode"),
        (["spec", "predictor", "scaleTarget"], 150, "scaleTarget for cpu is a percentage (1..100); got 150"),
        (["spec", "predictor", "canaryTrafficPercent"], 10, "only honoured in Knative mode"),
        (["spec", "predictor", "model", "storageUri"], "minio://bucket/x", "scheme KServe's storage initializer"),
        (["spec", "predictor", "model", "runtime"], "kserve-sklearnserver",
         "A GPU with the sklearnserver runtime would sit idle"),
        (["metadata", "name"], "9iris", "is not a valid InferenceService name"),
    ],
)
def test_admission_rules(isvc, path, value, message):
    errors = validate(_mutate(isvc, path, value))
    assert any(message in e for e in errors), errors


def test_unpinned_runtime_and_missing_mode_are_flagged(isvc):
    bad = copy.deepcopy(isvc)
    del bad["spec"]["predictor"]["model"]["runtime"]
    del bad["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
    errors = validate(bad)
    assert any("runtime: not set, so KServe auto-selects" in e for e in errors)
    assert any("deploymentMode is not set" in e for e in errors)


def test_knative_rules(card):
    doc = build_inference_service(card, "s3://m/", DeploymentSpec(mode="Knative"))
    assert validate(doc) == []
    errors = validate(_mutate(doc, ["spec", "predictor", "scaleMetric"], "cpu"))
    assert any("scaleMetric 'cpu' is not allowed with the kpa autoscaler in Knative mode" in e for e in errors)


def test_keda_rules(card):
    doc = build_inference_service(card, "s3://m/", DeploymentSpec(autoscaler="keda"))
    assert validate(doc) == []
    assert any("not supported with KEDA" in e
               for e in validate(_mutate(doc, ["spec", "predictor", "scaleMetric"], "cpu")))
    hpa = _mutate(doc, ["metadata", "annotations", "serving.kserve.io/autoscalerClass"], "hpa")
    assert any("takes Resource metrics only, got 'External'" in e for e in validate(hpa))


def test_built_in_kinds_go_to_kubernetes_validate():
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}}
    assert validate(account) == []
    assert validate({**account, "automountServiceAccountTokn": False}) != []
    assert validate({**account, "automountServiceAccountToken": "no"}) == [
        "automountServiceAccountToken: 'no' is not of type 'boolean', 'null'"
    ]


def test_unknown_kinds_are_errors_not_passes():
    assert validate({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "x"}}) == [
        "<document>: no schema for cert-manager.io/v1 Certificate in Kubernetes 1.34.0 "
        "(nor in the vendored KServe CRDs)"
    ]
    assert "no schema for serving.kserve.io/v1alpha1 InferenceGraph" in validate(
        {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph", "metadata": {"name": "g"}}
    )[0]
    assert validate("text") == ["<document>: expected a mapping (a Kubernetes object), got str"]
    assert validate({"kind": "Pod"}) == ["<document>: apiVersion and kind must both be set to strings"]


def test_validate_or_raise_and_validate_all(isvc):
    bad = _mutate(isvc, ["spec", "predictor", "scaleMetric"], "qps")
    with pytest.raises(ManifestInvalid) as info:
        validate_or_raise(bad)
    assert str(info.value).startswith("InferenceService/iris is invalid: ") and info.value.errors
    assert validate_all([isvc, None]) == []
    assert validate_all([bad])[0].startswith("InferenceService/iris: spec.predictor.scaleMetric")


def test_serving_runtime_kinds_are_checked():
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "pipeserve-runtime"},
        "spec": {
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [{"name": "kserve-container", "image": "ghcr.io/pipeserve/pipeserve-runtime:0.1.0"}],
        },
    }
    assert validate(runtime) == []
    assert validate({**runtime, "kind": "ServingRuntime"}) == []
    bad = copy.deepcopy(runtime)
    bad["spec"]["protocolVersion"] = ["v2"]
    assert any("'protocolVersion' was unexpected" in e for e in validate(bad))


@pytest.mark.cluster  # needs Go and the module proxy (or the module cache the cluster build fills)
def test_vendored_schemas_match_the_kserve_module_the_cluster_runs():
    from pipeserve.kube._vendor_crds import convert, kserve_module

    version, folder = kserve_module()
    fresh = convert(folder / "config" / "crd" / "full")
    vendored = json.loads(gzip.decompress(schema.SCHEMA_FILE.read_bytes()))
    assert vendored["_provenance"]["module"].startswith(f"github.com/kserve/kserve@{version} ")
    del vendored["_provenance"]["module"]
    assert fresh == vendored, "regenerate: make vendor-crds"


def test_kfp_pipeline_kinds_are_checked():
    version = {
        "apiVersion": "pipelines.kubeflow.org/v2beta1",
        "kind": "PipelineVersion",
        "metadata": {"name": "train-and-serve-v1"},
        "spec": {"pipelineName": "train-and-serve", "pipelineSpec": {"pipelineInfo": {"name": "train-and-serve"}}},
    }
    assert validate(version) == []
    typo = copy.deepcopy(version)
    typo["spec"]["pipelineSpec"]["root"] = {"dag": {"taskz": {}}}
    assert any("not a valid KFP PipelineSpec" in e and "taskz" in e for e in validate(typo))
    assert any("'pipelinename' was unexpected" in e for e in validate(_mutate(version, ["spec", "pipelinename"], "x")))
    pipeline = {"apiVersion": "pipelines.kubeflow.org/v2beta1", "kind": "Pipeline", "metadata": {"name": "p"},
                "spec": {"displayName": "P"}}
    assert validate(pipeline) == []
    assert validate(_mutate(pipeline, ["spec", "display"], "P")) != []


def test_lint_module_checks_files(tmp_path, isvc, capsys):
    from pipeserve.kube.builder import to_yaml
    from pipeserve.kube.lint import main

    good = tmp_path / "good.yaml"
    good.write_text(to_yaml([isvc, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}]))
    assert main([str(good)]) == 0
    assert "2 documents, 0 problems" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(to_yaml(_mutate(isvc, ["spec", "predictor", "scaleMetric"], "qps")))
    assert main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "bad.yaml: InferenceService/iris: spec.predictor.scaleMetric" in out
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main([str(empty)]) == 1


def test_chart_monitoring_and_keda_pieces_are_checked_against_closed_subsets():
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "iris"},
        "spec": {"selector": {"matchLabels": {"serving.kserve.io/inferenceservice": "iris"}},
                 "podMetricsEndpoints": [{"portNumber": 8002, "path": "/metrics", "interval": "30s"}]},
    }
    assert validate(monitor) == []
    assert validate(_mutate(monitor, ["spec", "podMetricsEndpoints", 0, "intervall"], "30s")) == [
        "spec.podMetricsEndpoints[0]: Additional properties are not allowed ('intervall' was unexpected)"
    ]
    assert any("30 seconds" in e
               for e in validate(_mutate(monitor, ["spec", "podMetricsEndpoints", 0, "interval"], "30 seconds")))
    auth = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": {"name": "p"},
            "spec": {"secretTargetRef": [{"parameter": "bearerToken", "name": "s", "key": "token"}]}}
    assert validate(auth) == []
    assert validate(_mutate(auth, ["spec", "secretTargetRef", 0], {"parameter": "bearerToken", "name": "s"})) == [
        "spec.secretTargetRef[0]: 'key' is a required property"
    ]
