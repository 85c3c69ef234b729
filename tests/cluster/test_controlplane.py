"""The real control plane and the real KServe controller, on kwok nodes (tests/cluster/conftest.py).

What is real here: kube-apiserver 1.34.5 + etcd, kube-controller-manager (Deployments, ReplicaSets,
ServiceAccounts, namespaces, GC), kube-scheduler (node selectors, taints, extended resources), the
KServe v0.20.0 controller (Standard mode) and its admission webhooks. What is simulated: kwok marks pods
bound to its fake nodes Running/Ready; no image is pulled and nothing serves inference.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from clusterkit import wait_for
from helpers import spawn_cli

pytestmark = pytest.mark.cluster

GPU_NODE = "gpu-node-0"
CPU_NODE = "cpu-node-0"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
STORAGE_URI = "s3://pipeserve-models/iris/"
READY_TIMEOUT_S = 120



@pytest.fixture(scope="module")
def rendered(iris_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The InferenceServices `pipeserve manifest` renders for triton-gpu and triton-cpu, as files."""
    out = tmp_path_factory.mktemp("isvc")
    files = {}
    for target, replicas in (("triton-gpu", "2"), ("triton-cpu", "1")):
        name = f"iris-{target.removeprefix('triton-')}"
        files[name] = out / f"{name}.yaml"
        proc = spawn_cli("manifest", str(iris_repo), "--storage-uri", STORAGE_URI, "--target", target,
                         "--name", name, "--max-replicas", replicas, "-o", str(files[name]))
        assert proc.returncode == 0, proc.stderr
    return files


def _isvc(rendered: dict[str, Path], name: str) -> dict:
    return yaml.safe_load(rendered[name].read_text())


def _cond(obj: dict | object, ctype: str) -> str | None:
    conds = obj.get("status", {}).get("conditions", []) if isinstance(obj, dict) else (obj.status.conditions or [])
    for c in conds:
        t = c["type"] if isinstance(c, dict) else c.type
        if t == ctype:
            return c["status"] if isinstance(c, dict) else c.status
    return None


# ------------------------------------------------------------------------------------------------
# control plane


def test_version_is_1_34_5(api_client):
    from kubernetes import client

    info = client.VersionApi(api_client).get_code()
    assert info.git_version == "v1.34.5"
    assert (info.major, info.minor) == ("1", "34")


def test_kwok_nodes_are_ready_with_gpu_labels_taints_and_allocatable(api_client):
    from kubernetes import client

    nodes = {n.metadata.name: n for n in client.CoreV1Api(api_client).list_node().items}
    assert {GPU_NODE, CPU_NODE} <= set(nodes)
    for node in (nodes[GPU_NODE], nodes[CPU_NODE]):
        assert _cond(node, "Ready") == "True", node.metadata.name

    gpu = nodes[GPU_NODE]
    assert gpu.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert int(gpu.status.allocatable["nvidia.com/gpu"]) >= 1
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in gpu.spec.taints or [])

    cpu = nodes[CPU_NODE]
    assert "nvidia.com/gpu.present" not in cpu.metadata.labels
    assert "nvidia.com/gpu" not in cpu.status.allocatable
    assert not [t for t in cpu.spec.taints or [] if t.effect in ("NoSchedule", "NoExecute")]


def test_kserve_crds_are_established(api_client):
    from kubernetes import client

    crds = {c.metadata.name: c for c in client.ApiextensionsV1Api(api_client).list_custom_resource_definition().items}
    for name in ("inferenceservices.serving.kserve.io", "servingruntimes.serving.kserve.io",
                 "clusterservingruntimes.serving.kserve.io", "trainedmodels.serving.kserve.io",
                 "inferencegraphs.serving.kserve.io", "clusterstoragecontainers.serving.kserve.io",
                 "scaledobjects.keda.sh", "services.serving.knative.dev"):
        assert name in crds, name
        assert _cond(crds[name], "Established") == "True", name


def test_serving_runtimes_are_installed(api_client):
    from kubernetes import client

    runtimes = client.CustomObjectsApi(api_client).list_cluster_custom_object(
        GROUP, "v1alpha1", "clusterservingruntimes")
    by_name = {r["metadata"]["name"]: r for r in runtimes["items"]}
    assert {"kserve-tritonserver", "kserve-sklearnserver", "pipeserve-runtime"} <= set(by_name)
    triton = by_name["kserve-tritonserver"]["spec"]["containers"][0]["image"]
    assert triton == "nvcr.io/nvidia/tritonserver:23.05-py3"


# ------------------------------------------------------------------------------------------------
# KServe webhooks and controller


def test_webhook_refuses_min_replicas_above_max(api_client, namespace, rendered):
    from kubernetes import client

    isvc = _isvc(rendered, "iris-cpu")
    isvc["metadata"]["name"] = "bad-replicas"
    isvc["spec"]["predictor"].update(minReplicas=3, maxReplicas=1)
    api = client.CustomObjectsApi(api_client)
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, isvc)
    status = json.loads(err.value.body)
    assert (status["code"], status["reason"]) == (403, "Forbidden")
    assert status["message"] == ('admission webhook "inferenceservice.kserve-webhook-server.validator" '
                                 "denied the request: "
                                 "'MinReplicas' cannot be greater than MaxReplicas")
    names = [i["metadata"]["name"]
             for i in api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]]
    assert "bad-replicas" not in names


def _apply_and_wait_ready(api_client, kubectl: str, local_cluster: Path, namespace: str,
                          manifest: Path) -> tuple[dict, float]:
    """`kubectl apply --server-side` the file, then wait for the InferenceService's Ready condition."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
    t0 = time.monotonic()
    proc = subprocess.run([kubectl, "--kubeconfig", str(local_cluster), "apply", "--server-side",
                           "--field-manager", "pipeserve-test", "-n", namespace, "-f", str(manifest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"inferenceservice.serving.kserve.io/{name} serverside-applied"

    def ready():
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return obj if _cond(obj, "Ready") == "True" else None

    obj = wait_for(ready, f"InferenceService {name} Ready", READY_TIMEOUT_S, 0.5)
    return obj, time.monotonic() - t0


def _predictor_pods(api_client, namespace: str, name: str) -> list:
    from kubernetes import client

    return client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"serving.kserve.io/inferenceservice={name}").items


@pytest.fixture(scope="module")
def gpu_isvc(api_client, kubectl, local_cluster, namespace, rendered):
    obj, seconds = _apply_and_wait_ready(api_client, kubectl, local_cluster, namespace, rendered["iris-gpu"])
    print(f"\niris-gpu Ready {seconds:.1f}s after create")
    return obj


@pytest.fixture(scope="module")
def cpu_isvc(api_client, kubectl, local_cluster, namespace, rendered):
    obj, seconds = _apply_and_wait_ready(api_client, kubectl, local_cluster, namespace, rendered["iris-cpu"])
    print(f"\niris-cpu Ready {seconds:.1f}s after create")
    return obj


def test_gpu_isvc_gets_a_deployment_on_the_gpu_node_and_becomes_ready(api_client, namespace, gpu_isvc):
    from kubernetes import client

    assert gpu_isvc["status"]["url"].startswith("http://iris-gpu-")
    assert _cond(gpu_isvc, "PredictorReady") == "True"
    assert _cond(gpu_isvc, "IngressReady") == "True"

    dep = client.AppsV1Api(api_client).read_namespaced_deployment("iris-gpu-predictor", namespace)
    assert _cond(dep, "Available") == "True"
    assert dep.status.ready_replicas == 1
    owner = dep.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("InferenceService", "iris-gpu", True)
    spec = dep.spec.template.spec
    assert spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert any(t.key == "nvidia.com/gpu" and t.operator == "Exists" and t.effect == "NoSchedule"
               for t in spec.tolerations)
    container = next(c for c in spec.containers if c.name == "kserve-container")
    assert container.image == "nvcr.io/nvidia/tritonserver:23.05-py3"
    assert container.resources.limits["nvidia.com/gpu"] == "1"

    hpa = client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler("iris-gpu-predictor", namespace)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 2)
    svc = client.CoreV1Api(api_client).read_namespaced_service("iris-gpu-predictor", namespace)
    assert svc.spec.cluster_ip

    pods = [p for p in _predictor_pods(api_client, namespace, "iris-gpu") if p.metadata.deletion_timestamp is None]
    assert len(pods) == 1
    pod = pods[0]
    assert pod.spec.node_name == GPU_NODE
    assert pod.status.phase == "Running"
    assert _cond(pod, "Ready") == "True"


def test_storage_initializer_is_injected_with_the_storage_uri(api_client, namespace, gpu_isvc):
    pod = _predictor_pods(api_client, namespace, "iris-gpu")[0]
    inits = {c.name: c for c in pod.spec.init_containers or []}
    assert "storage-initializer" in inits, [c.name for c in pod.spec.init_containers or []]
    init = inits["storage-initializer"]
    assert init.args == [STORAGE_URI, "/mnt/models"]
    assert init.image.startswith("kserve/storage-initializer:")
    mounts = {m.mount_path for m in init.volume_mounts}
    assert "/mnt/models" in mounts
    # The Deployment's own template has no init container: the pod mutator webhook added it.
    from kubernetes import client

    dep = client.AppsV1Api(api_client).read_namespaced_deployment("iris-gpu-predictor", namespace)
    assert not [c for c in dep.spec.template.spec.init_containers or [] if c.name == "storage-initializer"]


def test_cpu_isvc_lands_on_the_cpu_node(api_client, namespace, cpu_isvc):
    from kubernetes import client

    assert _cond(cpu_isvc, "Ready") == "True"
    dep = client.AppsV1Api(api_client).read_namespaced_deployment("iris-cpu-predictor", namespace)
    assert _cond(dep, "Available") == "True"
    container = next(c for c in dep.spec.template.spec.containers if c.name == "kserve-container")
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    pods = [p for p in _predictor_pods(api_client, namespace, "iris-cpu") if p.metadata.deletion_timestamp is None]
    assert len(pods) == 1
    assert pods[0].spec.node_name == CPU_NODE
    assert _cond(pods[0], "Ready") == "True"


def test_scheduler_enforces_gpu_allocatable(api_client, namespace):
    """gpu-node-0 has 2 nvidia.com/gpu: a pod asking for 3 is unschedulable, as on a real cluster."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="three-gpus"),
        spec=client.V1PodSpec(
            node_selector={"nvidia.com/gpu.present": "true"},
            tolerations=[client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            containers=[client.V1Container(name="c", image="example.invalid/never-pulled:1",
                                           resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "3"}))],
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    def unschedulable():
        p = core.read_namespaced_pod("three-gpus", namespace)
        for c in p.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return c.message
        return None

    message = wait_for(unschedulable, "the 3-GPU pod to be reported Unschedulable", 30, 0.5)
    assert "Insufficient nvidia.com/gpu" in message
    assert core.read_namespaced_pod("three-gpus", namespace).spec.node_name is None


def test_kserve_manager_runs_with_its_own_rbac_not_admin(api_client, local_cluster):
    """The controller's kubeconfig holds a ServiceAccount token, whose rights are KServe's ClusterRole."""
    from kubernetes import client

    cfg = yaml.safe_load((local_cluster.parent / "kubeconfigs" / "kserve-manager.yaml").read_text())
    user = cfg["users"][0]["user"]
    assert set(user) == {"token"}

    review = client.AuthenticationV1Api(api_client).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=user["token"])))
    assert review.status.authenticated
    sa_user = "system:serviceaccount:kserve:kserve-controller-manager"
    assert review.status.user.username == sa_user
    assert "system:masters" not in review.status.user.groups

    authz = client.AuthorizationV1Api(api_client)

    def allowed(verb: str, group: str, resource: str) -> bool:
        sar = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=sa_user, groups=review.status.user.groups,
            resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                            namespace="default")))
        return authz.create_subject_access_review(sar).status.allowed

    assert allowed("create", "apps", "deployments")
    assert allowed("update", "serving.kserve.io", "inferenceservices")
    assert not allowed("delete", "", "nodes")
    assert not allowed("create", "rbac.authorization.k8s.io", "clusterrolebindings")
