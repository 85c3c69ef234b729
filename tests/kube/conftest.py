"""Fixtures for the Kubernetes-delivery tests: a model card, the repository root, real helm/kubectl."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeserve.modelcard import ModelCard, TensorSpec

ROOT = Path(__file__).resolve().parents[2]


def make_card(name: str = "iris", **overrides) -> ModelCard:
    """A model card shaped like the packager's output for iris (LogisticRegression, INT64 labels)."""
    fields = dict(
        name=name,
        version="1",
        task="classification",
        estimator={"name": "logistic_regression", "class": "sklearn.linear_model.LogisticRegression", "params": {}},
        metrics={"accuracy": 0.9666667, "f1_macro": 0.9665, "roc_auc": 0.998, "log_loss": 0.11},
        inputs=[TensorSpec("input", "FP32", [-1, 4], feature_names=["a", "b", "c", "d"])],
        outputs=[TensorSpec("label", "INT64", [-1]), TensorSpec("probabilities", "FP32", [-1, 3], labels=[0, 1, 2])],
        data={"source": "sklearn:iris", "target": "target", "rows": 150, "fingerprint": "sha256:" + "f" * 64},
        libraries={"scikit-learn": "1.9.1"},
        parity={"ok": True},
        files={"config.pbtxt": "a" * 64, "1/model.onnx": "b" * 64, "1/model.skops": "c" * 64},
        created_at="2026-11-25T00:00:00Z",
        lineage={"pipeline_run_id": "run-42", "source_revision": "0123abc"},
        onnx={"ir_version": 8, "opsets": {"ai.onnx": 18, "ai.onnx.ml": 1}, "min_onnxruntime": "1.14",
              "packaged_for": "kserve-tritonserver:23.05-py3"},
    )
    fields.update(overrides)
    return ModelCard(**fields)


@pytest.fixture
def card() -> ModelCard:
    return make_card()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH. Run `make tools` and put .tools/bin on PATH "
            "(`make test` does both), e.g. PATH=$PWD/.tools/bin:$PATH pytest tests/kube",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool("kubectl")
