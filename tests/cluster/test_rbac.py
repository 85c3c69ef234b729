"""The RBAC pipeserve ships, checked with real tokens against the real API server.

The pipeline-runner ServiceAccount of manifests/rbac, and the one the chart creates with
rbac.create=true, get a TokenRequest token; SelfSubjectAccessReviews made *with that token* show
what it may do: create/patch/get/list/watch InferenceServices in its namespace, and nothing else.
Then a real `pipeserve deploy` runs as that identity.
"""

from __future__ import annotations

import pytest
from clusterkit import own_namespace
from helpers import run_cli
from kube.render import helm_template, kustomize

from pipeserve.kube.client import Cluster

pytestmark = pytest.mark.cluster

GRANTED = [("create", "inferenceservices", "serving.kserve.io"), ("patch", "inferenceservices", "serving.kserve.io"),
           ("get", "inferenceservices", "serving.kserve.io"), ("list", "inferenceservices", "serving.kserve.io"),
           ("watch", "inferenceservices", "serving.kserve.io"), ("get", "deployments", "apps"),
           ("watch", "deployments", "apps"), ("get", "pods", ""), ("list", "pods", "")]
DENIED = [("delete", "inferenceservices", "serving.kserve.io"),
          ("update", "inferenceservices/status", "serving.kserve.io"),
          ("get", "secrets", ""), ("list", "secrets", ""), ("create", "pods", ""), ("create", "deployments", "apps"),
          ("patch", "deployments", "apps"), ("delete", "pods", ""), ("get", "pods/log", ""),
          ("create", "servingruntimes", "serving.kserve.io"), ("create", "clusterservingruntimes", "serving.kserve.io"),
          ("create", "roles", "rbac.authorization.k8s.io"), ("list", "nodes", "")]


@pytest.fixture(scope="module")
def admin(local_cluster) -> Cluster:
    return Cluster(kubeconfig=str(local_cluster)).connect()


def _in(ns: str, docs: list[dict]) -> list[dict]:
    return [{**d, "metadata": {**d["metadata"], "namespace": ns}} for d in docs
            if "helm.sh/hook" not in (d["metadata"].get("annotations") or {})]


def assert_exactly_the_deployer_rights(identity: Cluster, ns: str, other: str) -> None:
    for verb, resource, group in GRANTED:
        assert identity.can_i(verb, resource, group, ns), f"should {verb} {resource}"
        assert not identity.can_i(verb, resource, group, other), f"should not {verb} {resource} in {other}"
    for verb, resource, group in DENIED:
        assert not identity.can_i(verb, resource, group, ns), f"should not {verb} {resource}"


@pytest.mark.parametrize("source", ["manifests/rbac", "chart rbac.create=true"])
def test_the_pipeline_runner_may_deploy_models_and_nothing_else(admin, kubectl, helm, kubeconfig_for, source,
                                                                iris_repo, monkeypatch):
    with own_namespace(admin, "rbac") as ns, own_namespace(admin, "rbac-other") as other:
        if source == "manifests/rbac":
            docs, account = kustomize(kubectl, "rbac"), "pipeserve-pipeline-runner"
        else:
            docs = [d for d in helm_template(helm, None, "--set", "rbac.create=true", "--set", "target=triton-cpu",
                                             namespace=ns) if d["kind"] != "InferenceService"]
            account = "iris-pipeline-runner"
        admin.apply_objects(_in(ns, docs))
        assert admin.get("v1", "ServiceAccount", account, ns) is not None
        kubeconfig = kubeconfig_for(account, ns)
        runner = Cluster(kubeconfig=str(kubeconfig)).connect()
        assert_exactly_the_deployer_rights(runner, ns, other)
        # And for real: `pipeserve deploy` as the runner (the GPU check is skipped: it may not list nodes).
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        result = run_cli("deploy", str(iris_repo), "--storage-uri", "s3://models/iris/", "--namespace", ns,
                         "--target", "triton-cpu", "--no-smoke", "--timeout", "60")
        assert result.code == 0, result.err
        assert result.err.splitlines()[-1].endswith("rolled out, Ready")
        assert "Ready condition only" not in result.err  # it sees the Deployment roll out, not only Ready
        doctor = run_cli("doctor", "--namespace", ns, "--target", "triton-gpu")
        assert "skipped GPU capacity: this identity may not list nodes" in doctor.out


def test_the_model_reader_has_no_rights_at_all(admin, kubectl, kubeconfig_for):
    with own_namespace(admin, "reader") as ns:
        admin.apply_objects(_in(ns, [d for d in kustomize(kubectl, "overlays/cpu") if d["kind"] == "ServiceAccount"]))
        reader = Cluster(kubeconfig=str(kubeconfig_for("model-reader", ns))).connect()
        for verb, resource, group in GRANTED + DENIED:
            assert not reader.can_i(verb, resource, group, ns), f"model-reader should not {verb} {resource}"
