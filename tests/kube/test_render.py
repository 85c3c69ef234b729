"""Every Kustomize overlay and chart scenario renders with the real tools and passes the strict checks;
chart and Kustomize render the same InferenceService; the chart refuses what KServe would reject."""

from __future__ import annotations

import pytest

from pipeserve.kube import DeploymentSpec, build_inference_service, keda_query
from pipeserve.kube.schema import validate_all

from .conftest import make_card
from .render import (
    CHART,
    SCENARIOS,
    helm_template,
    kustomize,
    only,
    run,
    strip_tool_labels,
)

OVERLAYS = ("base", "rbac", *(f"overlays/{s}" for s in SCENARIOS))
# The DeploymentSpec each overlay/scenario corresponds to (the builder must agree with both).
BUILDER_SPECS = {
    "cpu": DeploymentSpec(target="triton-cpu", service_account_name="model-reader"),
    "gpu": DeploymentSpec(target="triton-gpu", service_account_name="model-reader"),
    "knative-canary": DeploymentSpec(
        target="triton-cpu", mode="Knative", min_replicas=0, canary_traffic_percent=10,
        service_account_name="model-reader",
    ),
}


@pytest.mark.parametrize("path", OVERLAYS)
def test_every_overlay_builds_and_passes_the_strict_checks(kubectl, path):
    docs = kustomize(kubectl, path)
    assert validate_all(docs) == []


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["defaults", *SCENARIOS])
def test_every_chart_scenario_lints_renders_and_passes_the_strict_checks(helm, scenario):
    lint = [helm, "lint", "--strict", str(CHART)]
    if scenario:
        lint += ["-f", str(CHART / "ci" / f"{scenario}-values.yaml")]
    assert "0 chart(s) failed" in run(lint)
    docs = helm_template(helm, scenario)
    assert validate_all(docs) == []
    kinds = sorted(d["kind"] for d in docs)
    assert "InferenceService" in kinds and "Pod" in kinds  # the helm test pod renders too


def test_optional_chart_pieces_render_and_pass(helm):
    docs = helm_template(
        helm, None, "--set", "servingRuntime.create=true", "--set", "target=pipeserve", "--set", "rbac.create=true",
        "--set", "autoscaling.autoscaler=keda", "--set", "autoscaling.metric=gpu-utilization", "--set", "gpu.count=1",
        "--set", "replicas.min=0", "--set", "lineage.pipeline-run-id=run-7",
        "--set", "autoscaling.prometheus.authMode=bearer", "--set", "autoscaling.prometheus.authSecret=prom-token",
        "--set", "metrics.podMonitor.create=true",
    )
    assert validate_all(docs) == []
    assert sorted(d["kind"] for d in docs) == [
        "InferenceService", "NetworkPolicy", "Pod", "PodMonitor", "Role", "RoleBinding", "ServiceAccount",
        "ServiceAccount", "ServingRuntime", "TriggerAuthentication",
    ]
    auth = only(docs, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "bearerToken", "name": "prom-token", "key": "token"}]
    monitor = only(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": "iris"}
    assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8080  # the pipeserve runtime
    runtime = only(docs, "ServingRuntime")
    assert runtime["metadata"]["name"] == "pipeserve-runtime"
    assert runtime["spec"]["containers"][0]["args"][0] == "--model_name={{.Name}}"
    isvc = only(docs, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "pipeserve-runtime"
    assert isvc["metadata"]["annotations"]["pipeserve.dev/pipeline-run-id"] == "run-7"
    assert isvc["metadata"]["annotations"]["pipeserve.dev/v2-model-path"] == "/v2/models/iris"
    external = isvc["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]
    assert external["authenticationRef"] == {"authenticationRef": {"name": "iris-prometheus"}, "authModes": "bearer"}
    query = external["metric"]["query"]
    assert query == 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="ml",pod=~"iris-predictor-.*"})'


@pytest.mark.parametrize("metric", ["gpu-utilization", "triton-queue-time"])
def test_chart_and_builder_write_the_same_keda_query(helm, metric):
    # The PromQL lives in keda_query and in the chart's pipeserve.kedaQuery: they must agree.
    docs = helm_template(helm, None, "--set", "autoscaling.autoscaler=keda", "--set", f"autoscaling.metric={metric}")
    chart = only(docs, "InferenceService")["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]["metric"]
    assert chart["query"] == keda_query(metric, "iris", "ml", "iris")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_and_kustomize_render_the_same_inference_service(helm, kubectl, scenario):
    chart = helm_template(helm, scenario)
    overlay = kustomize(kubectl, f"overlays/{scenario}")
    chart_isvc = strip_tool_labels(only(chart, "InferenceService"))
    kustomize_isvc = strip_tool_labels(only(overlay, "InferenceService"))
    assert chart_isvc == kustomize_isvc
    # The ServiceAccount the predictor runs as exists in both, with the same contract.
    chart_sa = {d["metadata"]["name"]: d for d in chart if d["kind"] == "ServiceAccount"}["model-reader"]
    kustomize_sa = only(overlay, "ServiceAccount")
    for key in ("automountServiceAccountToken", "secrets"):
        assert chart_sa[key] == kustomize_sa[key]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_builder_agrees_with_the_overlay(kubectl, scenario):
    overlay = strip_tool_labels(only(kustomize(kubectl, f"overlays/{scenario}"), "InferenceService"))
    built = strip_tool_labels(build_inference_service(make_card(), "s3://models/iris/", BUILDER_SPECS[scenario]))
    # Lineage comes from a model card, which a static overlay does not have.
    annotations = built["metadata"]["annotations"]
    for key in [k for k in annotations if k.startswith("pipeserve.dev/") and k != "pipeserve.dev/v2-model-path"]:
        del annotations[key]
    del built["spec"]["predictor"]["annotations"]  # the pods' copy of the model digest
    assert built == overlay


def test_parity_check_fails_loudly_when_the_renders_differ(helm, kubectl):
    chart = strip_tool_labels(only(helm_template(helm, "cpu", "--set", "replicas.max=5"), "InferenceService"))
    overlay = strip_tool_labels(only(kustomize(kubectl, "overlays/cpu"), "InferenceService"))
    assert chart != overlay
    with pytest.raises(AssertionError, match="expected exactly one InferenceService"):
        only(kustomize(kubectl, "rbac"), "InferenceService")


# The chart's refusals of what KServe would reject are in refusals.py; these are the chart's own.
REFUSED = {
    "Prometheus auth without KEDA": (
        ["--set", "autoscaling.prometheus.authMode=bearer", "--set", "autoscaling.prometheus.authSecret=s"],
        "authMode only applies to the keda autoscaler",
    ),
    "Prometheus auth without a Secret": (
        ["--set", "autoscaling.autoscaler=keda", "--set", "autoscaling.prometheus.authMode=basic"],
        "authMode needs autoscaling.prometheus.authSecret",
    ),
    # values.schema.json
    "bad quantity": (["--set", "resources.limits.memory=4GB"], "at '/resources/limits/memory'"),
    "typo'd key": (["--set", "replica.min=1"], "additional properties 'replica' not allowed"),
    "minio storage": (["--set", "model.storageUri=minio://bucket/iris"], "at '/model/storageUri'"),
}


@pytest.mark.parametrize(("args", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_chart_refuses_what_kserve_would_reject(helm, args, message):
    with pytest.raises(AssertionError) as info:
        helm_template(helm, None, *args)
    assert message in str(info.value)


def test_notes_show_the_url_and_examples(helm, tmp_path):
    # helm renders NOTES.txt only on install; render it through a throwaway copy of the chart.
    import shutil

    import yaml

    chart = tmp_path / "pipeserve"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "notes-preview.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n'
        'data:\n  notes: {{ include "notes.preview" . | quote }}\n'
        '{{- define "notes.preview" }}\n' + notes + "\n{{- end }}\n"
    )
    out = run([helm, "template", "iris", str(chart), "-n", "ml", "--set", "name=iris-prod",
               "--show-only", "templates/notes-preview.yaml"])
    text = yaml.safe_load(out)["data"]["notes"]
    assert "kubectl get inferenceservice iris-prod -n ml -o jsonpath='{.status.url}'" in text
    assert "http://iris-prod-predictor.ml.svc.cluster.local" in text
    assert '"$URL/v2/models/iris/infer"' in text  # Triton: the folder name, not the InferenceService
    assert '"shape": [1, 4], "datatype": "FP32", "data": [0.0, 0.0, 0.0, 0.0]' in text
    assert 'client.infer("iris", [x])' in text


def test_helm_test_pod_checks_v2_readiness(helm):
    pod = only(helm_template(helm, "knative-canary"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][-1] == "http://iris-predictor.ml.svc.cluster.local/v2/models/iris/ready"


def test_pipeline_overlay_registers_the_compiled_pipeline(kubectl):
    docs = kustomize(kubectl, "pipeline")
    assert sorted(d["kind"] for d in docs) == ["Pipeline", "PipelineVersion"]
    assert validate_all(docs) == []


def test_runtime_overlay_renders_the_pipeserve_cluster_serving_runtime(kubectl, helm):
    docs = kustomize(kubectl, "runtime")
    runtime = only(docs, "ClusterServingRuntime")
    assert runtime["metadata"]["name"] == "pipeserve-runtime"
    assert validate_all(docs) == []
    # The chart's optional namespaced copy has the same spec.
    chart = only(helm_template(helm, None, "--set", "servingRuntime.create=true"), "ServingRuntime")
    assert chart["metadata"]["name"] == "pipeserve-runtime"
    assert chart["spec"] == runtime["spec"]
