"""Every rendered scenario, applied for real: what KServe's controller makes of it.

Each builder target x mode x autoscaler (tests/kube/test_builder.py's VALID_SPECS), each Kustomize
overlay and each chart ``ci/*-values.yaml`` is applied with server-side apply and strict field
validation into a namespace of its own. Then the objects the real controller wrote are checked
against the InferenceService: Deployment + Service + HPA, or ScaledObject, or a Knative Service;
the runtime's image (and a runtimeVersion override) and args; GPU limits, node selector and
tolerations; the storage-initializer KServe's pod webhook injects with our storageUri; replicas;
and, where the pods can be scheduled, Ready.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from clusterkit import empty_namespace, new_namespace, wait_for
from kube.conftest import make_card
from kube.render import CHART, MANIFESTS, SCENARIOS, helm_template, kustomize
from kube.test_builder import VALID_SPECS

from pipeserve.kube import build_inference_service
from pipeserve.kube.client import Cluster

pytestmark = pytest.mark.cluster

TIMEOUT_S = 60
# Scenarios whose pods cannot be scheduled here on purpose: a MIG resource and a node pool no
# kwok node has. The controller's objects are still checked; Ready is not expected.
UNSCHEDULABLE = {"triton-gpu 2 gpus custom"}


@pytest.fixture(scope="module")
def cluster(local_cluster) -> Cluster:
    cluster = Cluster(kubeconfig=str(local_cluster)).connect()
    # The "2 gpus custom" scenario names runtimeClassName nvidia; without the RuntimeClass the API
    # server refuses its pods (as on a real cluster without the NVIDIA container runtime).
    cluster.apply_objects([{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"},
                            "handler": "nvidia"}])
    return cluster


# The bucket credentials the overlays' and chart's model-reader ServiceAccount names: KServe's pod
# webhook reads them to give the storage-initializer its environment, and refuses pods without them.
S3_SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": "model-reader-s3", "annotations": {"serving.kserve.io/s3-endpoint": "minio:9000",
                                                                      "serving.kserve.io/s3-usehttps": "0"}},
             "stringData": {"AWS_ACCESS_KEY_ID": "reader", "AWS_SECRET_ACCESS_KEY": "reader-secret"}}


def _isolated(cluster: Cluster, docs: list[dict[str, Any]], label: str) -> tuple[str, dict[str, Any]]:
    """Apply ``docs`` (strict SSA) into a fresh namespace; return it and the stored InferenceService."""
    ns = new_namespace(cluster, f"sc-{label}")
    docs = [{**d, "metadata": {**d["metadata"], "namespace": ns}} for d in docs
            if "helm.sh/hook" not in (d["metadata"].get("annotations") or {})]  # not the `helm test` pod
    stored = cluster.apply_objects(docs)
    return ns, next(d for d in stored if d["kind"] == "InferenceService")


def check_controller_objects(cluster: Cluster, ns: str, isvc: dict[str, Any], schedulable: bool,
                             s3: bool = False) -> None:
    name = isvc["metadata"]["name"]
    annotations = isvc["metadata"]["annotations"]
    mode = annotations["serving.kserve.io/deploymentMode"]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    runtime = cluster.get("serving.kserve.io/v1alpha1", "ClusterServingRuntime", model["runtime"])
    rt_container = runtime["spec"]["containers"][0]
    image = rt_container["image"]
    if model.get("runtimeVersion"):
        image = f"{image.rsplit(':', 1)[0]}:{model['runtimeVersion']}"
    workload = f"{name}-predictor"
    if mode == "Knative":
        ksvc = wait_for(lambda: cluster.get("serving.knative.dev/v1", "Service", workload, ns), "the Knative Service")
        template = ksvc["spec"]["template"]
        pod_spec = template["spec"]
        assert cluster.get("apps/v1", "Deployment", workload, ns) is None  # Knative's job, not KServe's
        metric = predictor.get("scaleMetric")
        if metric:
            assert template["metadata"]["annotations"]["autoscaling.knative.dev/metric"] == metric
        if predictor.get("minReplicas") is not None:
            assert (template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]
                    == str(predictor["minReplicas"]))
    else:
        deployment = wait_for(lambda: cluster.get("apps/v1", "Deployment", workload, ns), "the Deployment")
        pod_spec = deployment["spec"]["template"]["spec"]
        assert cluster.get("v1", "Service", workload, ns) is not None
        autoscaler = annotations.get("serving.kserve.io/autoscalerClass", "hpa")
        hpa = cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", workload, ns)
        scaled = cluster.get("keda.sh/v1alpha1", "ScaledObject", workload, ns)
        if autoscaler == "hpa":
            hpa = wait_for(lambda: cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", workload, ns), "the HPA")
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
                max(1, predictor["minReplicas"]), predictor["maxReplicas"])
            assert scaled is None
        elif autoscaler == "keda":
            scaled = wait_for(lambda: cluster.get("keda.sh/v1alpha1", "ScaledObject", workload, ns), "the ScaledObject")
            trigger = scaled["spec"]["triggers"][0]
            external = predictor["autoScaling"]["metrics"][0]["external"]
            assert trigger["metadata"]["query"] == external["metric"]["query"]
            assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (
                predictor["minReplicas"], predictor["maxReplicas"])
            assert hpa is None
        else:  # none: fixed replicas, no autoscaler object
            assert hpa is None and scaled is None
            assert deployment["spec"]["replicas"] == predictor["minReplicas"]
    container = next(c for c in pod_spec["containers"] if c["name"] == "kserve-container")
    assert container["image"] == image
    assert container["args"][: len(rt_container.get("args", []))] == [
        a.replace("{{.Name}}", name) for a in rt_container.get("args", [])]
    limits = container["resources"]["limits"]
    gpu_keys = [k for k in model["resources"]["limits"] if k.endswith("/gpu") or "mig" in k]
    assert {k: str(limits[k]) for k in gpu_keys} == {k: str(model["resources"]["limits"][k]) for k in gpu_keys}
    if not gpu_keys:
        assert not [k for k in limits if k.endswith("/gpu")]
    for key, value in (predictor.get("nodeSelector") or {}).items():
        assert pod_spec["nodeSelector"][key] == value
    for toleration in predictor.get("tolerations") or []:
        assert toleration in pod_spec["tolerations"]
    if mode == "Knative":
        return
    pods = wait_for(lambda: cluster.list("v1", "Pod", ns, label_selector=f"serving.kserve.io/inferenceservice={name}"),
                    "the predictor pods")
    init = {c["name"]: c for c in pods[0]["spec"].get("initContainers", [])}
    assert init["storage-initializer"]["args"][:2] == [model["storageUri"], "/mnt/models"]
    if s3:  # the ServiceAccount lists S3_SECRET: KServe hands its keys and endpoint to the initializer
        env = {e["name"]: e for e in init["storage-initializer"].get("env", [])}
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "model-reader-s3"
        assert env["S3_ENDPOINT"]["value"] == "minio:9000" and env["S3_USE_HTTPS"]["value"] == "0"
    if schedulable:
        gpu = bool(gpu_keys)
        wait_for(lambda: all(
            p["spec"].get("nodeName") == ("gpu-node-0" if gpu else "cpu-node-0")
            and (p.get("status") or {}).get("phase") == "Running"
            for p in cluster.list("v1", "Pod", ns, label_selector=f"serving.kserve.io/inferenceservice={name}")),
            "the pods scheduled and Ready")
        cluster.wait_ready(name, ns, timeout_s=TIMEOUT_S)
    else:
        assert cluster.pod_problem(name, ns)  # Pending, with the scheduler's reason


@pytest.mark.parametrize("label", VALID_SPECS, ids=list(VALID_SPECS))
def test_builder_scenario(cluster, label):
    spec = dataclasses.replace(VALID_SPECS[label], namespace=None)
    isvc = build_inference_service(make_card(), "s3://models/iris/", spec)
    docs = [isvc]
    if spec.service_account_name:
        docs.insert(0, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": spec.service_account_name}})
    ns, stored = _isolated(cluster, docs, "b")
    try:
        check_controller_objects(cluster, ns, stored, schedulable=label not in UNSCHEDULABLE)
    finally:
        empty_namespace(cluster, ns)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kustomize_overlay(cluster, kubectl, scenario):
    ns, stored = _isolated(cluster, [S3_SECRET, *kustomize(kubectl, f"overlays/{scenario}")], "k")
    try:
        check_controller_objects(cluster, ns, stored, schedulable=True, s3=True)
    finally:
        empty_namespace(cluster, ns)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_scenario(cluster, helm, scenario):
    ns, stored = _isolated(cluster, [S3_SECRET, *helm_template(helm, scenario)], "c")
    try:
        check_controller_objects(cluster, ns, stored, schedulable=True, s3=True)
    finally:
        empty_namespace(cluster, ns)


def test_the_scenarios_cover_every_mode_and_autoscaler():
    isvcs = [build_inference_service(make_card(), "s3://m/", s) for s in VALID_SPECS.values()]
    seen = {(d["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
             d["metadata"]["annotations"].get("serving.kserve.io/autoscalerClass", "kpa")) for d in isvcs}
    assert seen == {("Standard", "hpa"), ("Standard", "keda"), ("Standard", "none"), ("Knative", "kpa")}
    assert {d["spec"]["predictor"]["model"]["runtime"] for d in isvcs} == {"kserve-tritonserver", "pipeserve-runtime"}
    assert MANIFESTS.is_dir() and CHART.is_dir()
