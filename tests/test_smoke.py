"""pipeserve.smoke: the smoke inference `make run` ends with, and the free-port helper."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pipeserve.smoke import SmokeTestFailed, free_ports, smoke_inference


def test_smoke_inference_serves_answers_and_stops(iris_fit, iris_repo):
    X = iris_fit.split.X_test[:3]
    result = smoke_inference(iris_repo, "iris", X)
    assert result.rows == 3 and result.model == "iris"
    np.testing.assert_array_equal(result.outputs["label"], iris_fit.model.predict(X))
    np.testing.assert_allclose(result.outputs["probabilities"], iris_fit.model.predict_proba(X), atol=1e-4)


def test_smoke_inference_reports_a_server_that_refuses_to_start(iris_fit, iris_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(iris_repo, repo)
    with (repo / "iris" / "1" / "model.onnx").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(SmokeTestFailed, match=r"exited with code 1: .*does not match its model card"):
        smoke_inference(repo, "iris", iris_fit.split.X_test[:1])


def test_free_ports_are_distinct_and_never_8080():
    ports = free_ports(20)
    assert len(set(ports)) == 20 and 8080 not in ports
