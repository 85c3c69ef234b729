"""Each KFP component's Python function, called directly with real artifacts in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from pipeserve.components import emit_inference_service, evaluate, load_data, package, train
from pipeserve.modelcard import read_card, verify_files


def _artifact(cls, tmp_path: Path, name: str):
    artifact = cls(name=name, uri=str(tmp_path / name), metadata={})
    return artifact


@pytest.fixture()
def steps(tmp_path):
    """Run load_data → train → evaluate → package through .python_func; return the artifacts."""
    train_data, test_data = _artifact(dsl.Dataset, tmp_path, "train"), _artifact(dsl.Dataset, tmp_path, "test")
    info = load_data.python_func(source="iris", train_data=train_data, test_data=test_data)
    model = _artifact(dsl.Model, tmp_path, "model")
    train.python_func(train_data=train_data, model=model, estimator="", params_json='{"C": 0.5}')
    metrics = _artifact(dsl.Metrics, tmp_path, "metrics")
    cls_metrics = _artifact(dsl.ClassificationMetrics, tmp_path, "cls")
    card_md = _artifact(dsl.Markdown, tmp_path, "card.md")
    metrics_json = evaluate.python_func(model=model, train_data=train_data, test_data=test_data, metrics=metrics,
                                        classification_metrics=cls_metrics, model_card=card_md, model_name="iris")
    packaged = _artifact(dsl.Model, tmp_path, "packaged")
    package.python_func(model=model, train_data=train_data, test_data=test_data, metrics_json=metrics_json,
                        model_name="iris", packaged_model=packaged, pipeline_run="run-123",
                        source_revision="abc123")
    return dict(info=info, train_data=train_data, test_data=test_data, model=model, metrics=metrics,
                cls_metrics=cls_metrics, card_md=card_md, metrics_json=metrics_json, packaged=packaged)


def test_load_data(steps):
    info = steps["info"]
    assert (info.task, info.target, info.rows) == ("classification", "target", 150)
    assert info.fingerprint.startswith("sha256:")
    assert steps["train_data"].metadata["rows"] == 120 and steps["test_data"].metadata["rows"] == 30
    assert steps["train_data"].metadata["lineage"]["fingerprint"] == info.fingerprint


def test_train(steps):
    meta = steps["model"].metadata
    assert meta["framework"] == "sklearn" and meta["format"] == "skops"
    assert meta["name"] == "logistic_regression" and meta["params"]["C"] == 0.5


def test_evaluate_logs_what_the_kfp_ui_draws(steps):
    metrics = json.loads(steps["metrics_json"])
    assert steps["metrics"].metadata == metrics
    assert set(metrics) == {"accuracy", "f1_macro", "roc_auc", "log_loss"}
    cm = steps["cls_metrics"].metadata["confusionMatrix"]
    assert [a["displayName"] for a in cm["annotationSpecs"]] == ["0", "1", "2"]
    assert sum(sum(row["row"]) for row in cm["rows"]) == 30
    roc = steps["cls_metrics"].metadata["confidenceMetrics"]
    assert roc and {"falsePositiveRate", "recall", "confidenceThreshold"} <= set(roc[0])
    assert Path(steps["card_md"].path).read_text().startswith("# Model card: iris")


def test_package_writes_a_verified_repository(steps):
    packaged = steps["packaged"]
    card = read_card(Path(packaged.path) / "iris")
    verify_files(Path(packaged.path) / "iris", card)
    assert card.lineage == {"pipeline_run_id": "run-123", "source_revision": "abc123"}
    assert card.estimator["params"]["C"] == 0.5
    assert card.metrics == json.loads(steps["metrics_json"])
    assert packaged.metadata["model_name"] == "iris" and len(packaged.metadata["onnx_sha256"]) == 64


@pytest.mark.parametrize("storage_uri", ["", "s3://models/iris/"])
def test_emit_writes_a_valid_inference_service(steps, tmp_path, storage_uri):
    from pipeserve.kube.schema import validate

    packaged = steps["packaged"]
    manifest = _artifact(dsl.Artifact, tmp_path, "isvc.yaml")
    got = emit_inference_service.python_func(packaged_model=packaged, model_name="iris", manifest=manifest,
                                             target="triton-cpu", namespace="models", min_replicas=1,
                                             max_replicas=2, storage_uri=storage_uri)
    expected = storage_uri or Path(packaged.path).as_uri()
    assert got == expected
    doc = yaml.safe_load(Path(manifest.path).read_text())
    assert doc["spec"]["predictor"]["model"]["storageUri"] == expected
    assert doc["metadata"]["namespace"] == "models"
    assert doc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    assert validate(doc) == []
    assert manifest.metadata["storageUri"] == expected


@pytest.mark.parametrize(("uri", "expected"), [
    ("minio://mlpipeline/v2/artifacts/p/run/package/packaged_model", "s3://mlpipeline/v2/artifacts/p/run/package/packaged_model"),
    ("gs://bucket/x", "gs://bucket/x"),
    ("s3://bucket/x", "s3://bucket/x"),
    ("/tmp/kfp/run/packaged_model", "file:///tmp/kfp/run/packaged_model"),
])
def test_storage_uri_for_kfp_artifacts(uri, expected):
    from pipeserve.storage import storage_uri_for

    assert storage_uri_for(uri) == expected
