"""End to end on a live cluster: apply, wait Ready, infer over v2, delete.

Skipped unless PIPESERVE_TEST_KUBECONTEXT names a kubeconfig context of a cluster with KServe 0.21.
It also needs the packaged iris model where the cluster can fetch it, e.g.:

    make run                                                  # writes build/model/iris/...
    aws s3 cp --recursive build/model s3://my-bucket/pipeserve-test/
    export PIPESERVE_TEST_KUBECONTEXT=my-context
    export PIPESERVE_TEST_STORAGE_URI=s3://my-bucket/pipeserve-test/
    # optional: PIPESERVE_TEST_NAMESPACE (default: the context's namespace),
    #   PIPESERVE_TEST_TARGET (triton-cpu by default; triton-gpu, pipeserve),
    #   PIPESERVE_TEST_SERVICE_ACCOUNT (the ServiceAccount holding the bucket credentials),
    #   PIPESERVE_TEST_INFER_URL (e.g. http://localhost:8000 through `kubectl port-forward
    #   svc/pipeserve-e2e-iris-predictor 8000:80` when status.url is not reachable from here)
    PATH=$PWD/.tools/bin:$PATH .venv/bin/python -m pytest -m cluster tests/kube/test_cluster.py
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeserve.kube import DeploymentSpec, build_inference_service
from pipeserve.kube.client import Cluster, smoke_infer
from pipeserve.modelcard import read_card

pytestmark = pytest.mark.cluster

HOW = (
    "needs a live cluster with KServe 0.21: set PIPESERVE_TEST_KUBECONTEXT (a kubeconfig context) and "
    "PIPESERVE_TEST_STORAGE_URI (where the cluster can fetch the `make run` model repository); see "
    "tests/kube/test_cluster.py's docstring"
)


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("PIPESERVE_TEST_")}
    if not env.get("PIPESERVE_TEST_KUBECONTEXT") or not env.get("PIPESERVE_TEST_STORAGE_URI"):
        pytest.skip(HOW)
    return env


def test_apply_wait_ready_infer_delete(cluster_env, iris_repo, iris_split):
    cluster = Cluster(cluster_env["PIPESERVE_TEST_KUBECONTEXT"]).connect()
    namespace = cluster_env.get("PIPESERVE_TEST_NAMESPACE") or cluster.namespace
    card = read_card(iris_repo / "iris")
    spec = DeploymentSpec(
        target=cluster_env.get("PIPESERVE_TEST_TARGET", "triton-cpu"),
        name="pipeserve-e2e-iris",
        namespace=namespace,
        service_account_name=cluster_env.get("PIPESERVE_TEST_SERVICE_ACCOUNT"),
        min_replicas=1,
        max_replicas=1,
    )
    isvc = build_inference_service(card, cluster_env["PIPESERVE_TEST_STORAGE_URI"], spec)
    try:
        assert cluster.apply([isvc]) == ["InferenceService/pipeserve-e2e-iris"]
        state = cluster.wait_ready("pipeserve-e2e-iris", namespace, timeout_s=900, progress=print)
        assert state.ready and state.conditions["Ready"].startswith("True")
        url = cluster_env.get("PIPESERVE_TEST_INFER_URL") or state.url
        model = isvc["metadata"]["annotations"]["pipeserve.dev/v2-model-path"].rsplit("/", 1)[-1]
        outputs = smoke_infer(url, model, card.n_features)
        assert set(outputs) == {"label", "probabilities"} and len(outputs["label"]) == 1
        # Real rows: the served labels reproduce the packaged model's test-split accuracy.
        from pipeserve.client import Predictor

        X, y = iris_split
        with Predictor(url, model=model) as predictor:
            labels = predictor.infer(X.astype(np.float32))["label"]
        assert labels.shape == (len(y),)
        assert float((labels == y).mean()) >= card.metrics["accuracy"] - 1e-9
    finally:
        cluster.delete_inference_service("pipeserve-e2e-iris", namespace)
