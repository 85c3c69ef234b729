"""The pipeline's deploy step, through kfp.local against the local control plane, with a real registry.

The registry is a real `mlflow server` whose artifacts live on the local S3 store (versitygw), so
each version has a storage URI KServe could fetch. Pods are simulated, so --no-smoke.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from clusterkit import gpus_taken, own_namespace
from helpers import run_cli

from pipeserve.kube.client import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def ns(local_cluster, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("KUBECONFIG", str(local_cluster))
    with own_namespace(Cluster().connect(), "pd") as name:
        yield name


def _served(ns: str) -> tuple[str, str, bool]:
    """(model version, storageUri, Ready) of InferenceService iris, checked against the controller's Deployment.

    KServe's controller copies the storage URI into the predictor pod template (the annotation its
    storage-initializer injector reads) together with our annotations: the Deployment it wrote must
    carry the same version and URI as the InferenceService.
    """
    cluster = Cluster().connect()
    isvc = cluster.get_inference_service("iris", ns)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in isvc["status"]["conditions"])
    version = isvc["metadata"]["annotations"]["pipeserve.dev/model-version"]
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    pod = cluster.get("apps/v1", "Deployment", "iris-predictor", ns)["spec"]["template"]["metadata"]["annotations"]
    assert (pod["pipeserve.dev/model-version"], pod["internal.serving.kserve.io/storage-initializer-sourceuri"]) \
        == (version, uri)
    return version, uri, ready


def test_deploy_step_serves_each_version_the_gate_lets_through_and_rollback_restores(mlflow_on_s3, ns, tmp_path):
    url, destination = mlflow_on_s3
    common = ["--registry", url, "--artifacts-destination", destination, "--deploy", "--namespace", ns,
              "--no-smoke", "--cpu", "--output", str(tmp_path / "out")]
    weak = run_cli("run", "-p", "C=0.001", *common)
    assert weak.code == 0, weak.err
    assert f"deployed           {ns}/iris serves iris/1" in weak.out
    version, uri, ready = _served(ns)
    assert (version, ready) == ("1", True) and uri.startswith(destination)
    default = run_cli("run", *common)
    assert default.code == 0, default.err
    assert f"{ns}/iris serves iris/2" in default.out and "champion 1 -> 2" in default.out
    version, uri2, ready = _served(ns)
    assert (version, ready) == ("2", True) and uri2 != uri
    # A weak model again: held back by the gate, nothing deployed, version 2 keeps serving.
    held = run_cli("run", "-p", "C=0.001", *common)
    assert held.code == 0 and "deployed           nothing: the gate held the model back" in held.out
    assert _served(ns) == ("2", uri2, True)
    # The rollback command serves version 1 again (its own storage URI) and moves the alias back.
    back = run_cli("models", "rollback", "iris", "--registry", url, "--namespace", ns, "--no-smoke")
    assert back.code == 0, back.err
    assert _served(ns) == ("1", uri, True)
    shown = run_cli("models", "show", "iris@champion", "--registry", url, "--output", "json")
    assert '"version": "1"' in shown.out


def test_a_rollout_that_never_becomes_ready_rolls_back_and_fails_the_run(mlflow_on_s3, ns, tmp_path):
    url, destination = mlflow_on_s3
    name = f"m{uuid.uuid4().hex[:6]}"
    base = ["--registry", url, "--artifacts-destination", destination, "--deploy", "--namespace", ns,
            "--no-smoke", "--output", str(tmp_path / "out"), "--model-name", name, "--deploy-timeout", "10"]
    first = run_cli("run", "-p", "C=0.001", "--cpu", *base)
    assert first.code == 0, first.err
    cluster = Cluster().connect()
    with gpus_taken(cluster, ns):
        # Version 2 is better (the gate lets it through) but wants a GPU, and none is free.
        failed = run_cli("run", *base)
    assert failed.code == 1, failed.err
    assert "Insufficient nvidia.com/gpu" in failed.err and "back to version 1" in failed.err
    shown = run_cli("models", "show", f"{name}@champion", "--registry", url, "--output", "json")
    assert '"version": "1"' in shown.out  # the alias did not move
