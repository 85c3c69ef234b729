"""pipeserve.evaluation: metrics, confusion matrix, ROC points, Markdown card."""

from __future__ import annotations

import json

import numpy as np
from sklearn.dummy import DummyClassifier

from pipeserve import data, evaluation, training


def _fit(source, name):
    ds = data.load_dataset(source)
    split = data.split_dataset(ds)
    return training.train(ds.task, name, {}, split.X_train, split.y_train), split


def test_multiclass_metrics_and_curves():
    model, split = _fit("iris", "logistic_regression")
    ev = evaluation.evaluate(model, split.X_test, split.y_test, "classification")
    assert set(ev.metrics) == {"accuracy", "f1_macro", "roc_auc", "log_loss"}
    assert 0.9 <= ev.metrics["accuracy"] <= 1.0
    assert ev.labels == [0, 1, 2]
    matrix = np.array(ev.confusion_matrix)
    assert matrix.shape == (3, 3) and matrix.sum() == len(split.y_test)
    assert np.trace(matrix) == round(ev.metrics["accuracy"] * len(split.y_test))
    assert ev.roc[0]["threshold"] == 1.0  # +inf clipped
    fpr = [p["fpr"] for p in ev.roc]
    assert fpr == sorted(fpr) and ev.roc[-1]["tpr"] == 1.0
    json.dumps(ev.metrics), json.dumps(ev.roc)  # JSON-safe (no inf, no numpy types)


def test_binary_auc_uses_positive_class():
    model, split = _fit("breast_cancer", "logistic_regression")
    ev = evaluation.evaluate(model, split.X_test, split.y_test, "classification")
    assert ev.metrics["roc_auc"] > 0.95
    assert len(ev.roc) <= evaluation.MAX_ROC_POINTS


def test_regression_metrics():
    model, split = _fit("diabetes", "ridge")
    ev = evaluation.evaluate(model, split.X_test, split.y_test, "regression")
    assert set(ev.metrics) == {"rmse", "mae", "r2"}
    assert ev.metrics["mae"] <= ev.metrics["rmse"]
    assert ev.confusion_matrix == [] and ev.roc == []


def test_auc_left_out_when_test_split_lacks_a_class():
    X = np.arange(12, dtype=np.float32).reshape(-1, 1)
    y = np.array([0, 1, 2] * 4)
    model = DummyClassifier(strategy="prior").fit(X, y)
    ev = evaluation.evaluate(model, X[:4], np.array([0, 1, 0, 1]), "classification")
    assert "roc_auc" not in ev.metrics and ev.roc == []
    assert np.array(ev.confusion_matrix).shape == (3, 3)


def test_markdown_card():
    model, split = _fit("iris", "logistic_regression")
    ev = evaluation.evaluate(model, split.X_test, split.y_test, "classification")
    md = evaluation.model_card_markdown(
        "iris", "classification", training.describe("logistic_regression", model),
        {"source": "iris", "rows": 150.0, "target": "target", "fingerprint": "sha256:" + "0" * 64}, ev)
    assert md.startswith("# Model card: iris")
    assert "150 rows" in md and "| accuracy |" in md and "| **2** |" in md
