"""`pipeserve deploy` and `pipeserve doctor` on the local control plane: scheduling, readiness, faults.

Pods are simulated (kwok), so nothing answers inference on the cluster: deploys run with
--no-smoke, or point the smoke inference at a local `pipeserve serve` of the same repository.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from clusterkit import gpus_taken, own_namespace
from helpers import run_cli
from kube.refusals import REFUSALS
from kube.test_refusals import hand_written

from pipeserve.kube.client import Cluster, ManifestRejected
from pipeserve.localserver import LocalServer
from pipeserve.workflow import fit_and_package

pytestmark = pytest.mark.cluster

URI = "s3://models/iris/"


@pytest.fixture(scope="module")
def admin(local_cluster, monkeypatch_module) -> Cluster:
    monkeypatch_module.setenv("KUBECONFIG", str(local_cluster))
    return Cluster().connect()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture
def ns(admin) -> Iterator[str]:
    """A namespace of the test's own; its InferenceServices are deleted afterwards (frees the GPUs)."""
    with own_namespace(admin, "dp") as name:
        yield name


def _pods(admin: Cluster, ns: str, name: str) -> list[dict]:
    return admin.list("v1", "Pod", ns, label_selector=f"serving.kserve.io/inferenceservice={name}")


def deploy(repo, ns: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("deploy", str(repo), "--storage-uri", URI, "--namespace", ns, "--timeout", "60", *extra)


def test_a_gpu_target_lands_on_the_gpu_node_and_deploy_returns_once_ready(admin, ns, iris_repo):
    result = deploy(iris_repo, ns, "--no-smoke")
    assert result.code == 0, result.err
    assert result.out.strip().endswith("/v2/models/iris/infer")
    assert "preflight ok" in result.err and result.err.splitlines()[-1].endswith("rolled out, Ready")
    # deploy returned only after Ready: everything below is already true, no waiting.
    assert admin.get_inference_service("iris", ns)["status"]["conditions"]
    assert any(c["type"] == "Ready" and c["status"] == "True"
               for c in admin.get_inference_service("iris", ns)["status"]["conditions"])
    deployment = admin.get("apps/v1", "Deployment", "iris-predictor", ns)
    assert any(c["type"] == "Available" and c["status"] == "True" for c in deployment["status"]["conditions"])
    (pod,) = _pods(admin, ns, "iris")
    assert pod["spec"]["nodeName"] == "gpu-node-0"
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "kserve-container")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_cpu_target_needs_no_gpu_node(admin, ns, iris_repo):
    assert deploy(iris_repo, ns, "--target", "triton-cpu", "--no-smoke").code == 0
    (pod,) = _pods(admin, ns, "iris")
    assert pod["spec"]["nodeName"] == "cpu-node-0"
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "kserve-container")
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_the_smoke_inference_can_go_to_a_local_server_of_the_same_repository(ns, iris_repo):
    with LocalServer.serve(iris_repo) as server:
        result = deploy(iris_repo, ns, "--target", "triton-cpu", "--smoke-url", server.url)
    assert result.code == 0, result.err
    assert "smoke inference ok: {'label': [0], 'probabilities': [[" in result.err


def test_without_gpu_capacity_deploy_fails_in_its_timeout_with_the_schedulers_reason(admin, ns, iris_repo):
    with gpus_taken(admin, ns):  # so the predictor's pod cannot be scheduled
        started = time.monotonic()
        result = deploy(iris_repo, ns, "--no-smoke", "--timeout", "15")
        took = time.monotonic() - started
    assert result.code == 1 and result.out == ""
    errors = [line for line in result.err.splitlines() if ": error: " in line]
    assert errors == [result.err.splitlines()[-1]]  # progress lines, then one line saying why
    assert "not Ready after 15s" in errors[0]
    assert "0/2 nodes are available" in errors[0] and "Insufficient nvidia.com/gpu" in errors[0]
    assert took < 45  # within its timeout (plus start-up), never a hang


def test_reapplying_the_same_model_changes_nothing_and_a_new_version_rolls_the_deployment(admin, ns, iris_repo,
                                                                                       tmp_path):
    assert deploy(iris_repo, ns, "--target", "triton-cpu", "--no-smoke").code == 0
    first = admin.get_inference_service("iris", ns)["metadata"]["generation"]
    again = deploy(iris_repo, ns, "--target", "triton-cpu", "--no-smoke")
    assert again.code == 0 and "unchanged" in again.err
    assert admin.get_inference_service("iris", ns)["metadata"]["generation"] == first
    sets = lambda: admin.list("apps/v1", "ReplicaSet", ns)  # noqa: E731
    assert len(sets()) == 1
    # Version 2 of the model, at the same storage URI: the pods' model digest changes, so they roll.
    repo = tmp_path / "repo"
    shutil.copytree(iris_repo, repo)
    fit_and_package("iris", repo, name="iris", version="2", params={"C": 0.5})
    assert deploy(repo, ns, "--target", "triton-cpu", "--no-smoke").code == 0
    assert admin.get_inference_service("iris", ns)["metadata"]["generation"] == first + 1
    assert len(sets()) == 2
    annotations = admin.get_inference_service("iris", ns)["metadata"]["annotations"]
    assert annotations["pipeserve.dev/model-version"] == "2"


def test_a_webhook_refusal_is_surfaced_verbatim_with_exit_code_2(admin, ns):
    doc = hand_written(REFUSALS["min > max"])
    doc["metadata"]["namespace"] = ns
    with pytest.raises(ManifestRejected) as info:
        admin.apply_objects([doc])
    assert info.value.exit_code == 2
    assert 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: ' \
           "'MinReplicas' cannot be greater than MaxReplicas" in str(info.value)


def test_rbac_denied_exits_1_and_names_what_is_missing(admin, ns, iris_repo, kubeconfig_for, monkeypatch):
    # A ServiceAccount that may read InferenceServices and nothing else.
    admin.apply_objects([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": ns},
         "rules": [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]},
    ])
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for("reader", ns)))
    result = deploy(iris_repo, ns, "--no-smoke")
    assert result.code == 1 and result.err.count("\n") == 1
    assert "may not create/patch/watch inferenceservices.serving.kserve.io in namespace" in result.err
    # Past the preflight, the API server's own 403 names the verb and resource too.
    reader = Cluster().connect()
    with pytest.raises(Exception) as info:
        reader.apply_objects([{**hand_written(REFUSALS["min > max"]), "metadata": {"name": "x", "namespace": ns}}])
    assert type(info.value).__name__ == "ClusterError"
    assert 'cannot patch resource "inferenceservices" in API group "serving.kserve.io"' in str(info.value)


def test_doctor_passes_on_the_local_cluster(ns, iris_repo):
    result = run_cli("doctor", str(iris_repo), "--namespace", ns)
    assert result.code == 0, result.out
    lines = result.out.splitlines()
    assert len(lines) == 7 and all(line.startswith("ok") for line in lines)
    assert "loads the model (ONNX Runtime 1.15.0)" in result.out
    assert "1 node(s) can take the predictor: gpu-node-0" in result.out


@pytest.mark.parametrize(("argv", "check", "reason", "fix"), [
    (["--node-selector", "pool=h100"], "GPU capacity", "no node offers 1 nvidia.com/gpu and matches nodeSelector",
     "add GPU nodes"),
    (["--service-account", "nobody"], "storage credentials", "ServiceAccount nobody does not exist",
     "--s3-credentials"),
    (["--runtime-class", "gvisor"], "runtime class", "RuntimeClass gvisor does not exist", "drop --runtime-class"),
])
def test_doctor_fails_each_check_with_a_reason_and_a_fix(ns, iris_repo, argv, check, reason, fix):
    result = run_cli("doctor", str(iris_repo), "--namespace", ns, *argv)
    assert result.code == 1
    (line,) = [x for x in result.out.splitlines() if x.startswith("failed")]
    assert f"{check}: " in line and reason in line and "Fix: " in line and fix in line


def test_doctor_finds_a_service_account_whose_secret_is_missing(admin, ns, iris_repo):
    admin.apply_objects([{"apiVersion": "v1", "kind": "ServiceAccount", "secrets": [{"name": "creds"}],
                          "metadata": {"name": "creds", "namespace": ns}}])
    result = run_cli("doctor", str(iris_repo), "--namespace", ns, "--service-account", "creds")
    assert result.code == 1 and "names Secret creds, which does not exist" in result.out


def test_doctor_refuses_a_model_the_installed_runtime_cannot_load(ns, tmp_path):
    fit = fit_and_package("iris", tmp_path / "repo", name="iris", serving_target="pipeserve")  # IR 10
    result = run_cli("doctor", str(fit.model_dir), "--namespace", ns, "--target", "triton-cpu")
    assert result.code == 1
    assert "runtime kserve-tritonserver: Model iris v1 needs ONNX IR 10" in result.out
    assert "runs ONNX Runtime 1.15.0" in result.out


def test_doctor_and_deploy_when_a_runtime_is_missing(admin, ns, iris_repo, kubectl):
    saved = admin.get("serving.kserve.io/v1alpha1", "ClusterServingRuntime", "pipeserve-runtime")
    admin.delete("serving.kserve.io/v1alpha1", "ClusterServingRuntime", "pipeserve-runtime")
    try:
        result = run_cli("doctor", "--namespace", ns, "--target", "pipeserve")
        assert result.code == 1
        assert "no ServingRuntime or ClusterServingRuntime named pipeserve-runtime" in result.out
        assert "Fix: kubectl apply -k manifests/runtime" in result.out
        deployed = deploy(iris_repo, ns, "--target", "pipeserve", "--no-smoke")
        assert deployed.code == 1 and "preflight failed: runtime pipeserve-runtime" in deployed.err
    finally:
        spec = {k: saved[k] for k in ("apiVersion", "kind", "spec")}
        admin.apply_objects([{**spec, "metadata": {"name": "pipeserve-runtime",
                                                   "labels": saved["metadata"].get("labels", {})}}])


def test_a_cluster_without_kserve(bare_apiserver, iris_repo, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(bare_apiserver))
    result = run_cli("doctor", str(iris_repo), "--mode", "Knative", "--target", "triton-cpu")
    assert result.code == 1
    assert "failed  KServe CRDs: the cluster does not know serving.kserve.io/v1beta1 InferenceService" in result.out
    assert "Fix: install KServe" in result.out
    assert "failed  deployment mode: Knative mode, but Knative Serving is not installed" in result.out
    deployed = run_cli("deploy", str(iris_repo), "--storage-uri", URI, "--no-smoke")
    assert deployed.code == 1 and "preflight failed: KServe CRDs" in deployed.err
