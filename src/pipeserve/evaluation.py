"""Metrics on the test split, plus the confusion matrix and ROC points the KFP UI draws."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeserve.catalog import CLASSIFICATION

# The KFP UI draws every ROC point it is given; more than this only slows it down.
MAX_ROC_POINTS = 200


@dataclass(frozen=True)
class Evaluation:
    """Evaluation results.

    Args:
        metrics: Scalar metrics (accuracy, f1_macro, roc_auc, log_loss; or rmse, mae, r2).
        labels: Class labels in confusion-matrix order (classification only).
        confusion_matrix: Rows are true labels, columns predicted labels.
        roc: ROC points ``{"fpr", "tpr", "threshold"}``; one-vs-rest micro-average for multiclass.
    """

    metrics: dict[str, float]
    labels: list[Any] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    roc: list[dict[str, float]] = field(default_factory=list)


def evaluate(model: Any, X: np.ndarray, y: np.ndarray, task: str) -> Evaluation:
    """Evaluate a fitted estimator on a held-out split."""
    if task == CLASSIFICATION:
        return _classification(model, X, y)
    return _regression(model, X, y)


def _regression(model: Any, X: np.ndarray, y: np.ndarray) -> Evaluation:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    pred = model.predict(X)
    return Evaluation(
        metrics={
            "rmse": float(np.sqrt(mean_squared_error(y, pred))),
            "mae": float(mean_absolute_error(y, pred)),
            "r2": float(r2_score(y, pred)),
        }
    )


def _classification(model: Any, X: np.ndarray, y: np.ndarray) -> Evaluation:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score, roc_curve
    from sklearn.preprocessing import label_binarize

    classes = model.classes_
    pred = model.predict(X)
    proba = model.predict_proba(X)
    metrics = {
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro")),
        "log_loss": float(log_loss(y, proba, labels=classes)),
    }
    present = set(np.unique(y))
    if len(present) >= 2:
        # AUC is undefined when the test split lacks a class; leave it out rather than guess.
        if len(classes) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
            y_score, y_true = proba[:, 1], (y == classes[1]).astype(int)
        elif present == set(classes):
            metrics["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
            y_true, y_score = label_binarize(y, classes=classes).ravel(), proba.ravel()
        else:
            y_true = y_score = None
        roc = _roc_points(roc_curve, y_true, y_score) if y_true is not None else []
    else:
        roc = []
    matrix = confusion_matrix(y, pred, labels=classes)
    return Evaluation(
        metrics=metrics,
        labels=[_plain(c) for c in classes],
        confusion_matrix=matrix.astype(int).tolist(),
        roc=roc,
    )


def _roc_points(roc_curve: Any, y_true: np.ndarray, y_score: np.ndarray) -> list[dict[str, float]]:
    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    # The first threshold is +inf (predict nothing positive); JSON and protobuf Struct cannot carry it.
    thresholds = np.minimum(thresholds, 1.0)
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), MAX_ROC_POINTS)).astype(int))
    return [
        {"fpr": float(fpr[i]), "tpr": float(tpr[i]), "threshold": float(thresholds[i])} for i in idx
    ]


def _plain(value: Any) -> Any:
    """numpy scalar -> Python scalar (for JSON)."""
    return value.item() if hasattr(value, "item") else value


def model_card_markdown(name: str, task: str, estimator: dict[str, Any], data: dict[str, Any],
                        evaluation: Evaluation) -> str:
    """A short Markdown model card for the KFP UI's Markdown viewer."""
    lines = [
        f"# Model card: {name}",
        "",
        f"- **Task:** {task}",
        f"- **Estimator:** `{estimator['class']}` ({estimator['name']})",
        f"- **Data:** {data.get('source')} — {int(data.get('rows', 0))} rows, "
        f"target `{data.get('target')}`, fingerprint `{data.get('fingerprint', '')[:19]}…`",
        "",
        "## Metrics (test split)",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.4f} |" for k, v in sorted(evaluation.metrics.items())],
    ]
    if evaluation.confusion_matrix:
        header = " | ".join(str(c) for c in evaluation.labels)
        lines += ["", "## Confusion matrix (rows: true, columns: predicted)", "",
                  f"| | {header} |", "|---" * (len(evaluation.labels) + 1) + "|"]
        lines += [f"| **{lab}** | " + " | ".join(str(v) for v in row) + " |"
                  for lab, row in zip(evaluation.labels, evaluation.confusion_matrix, strict=True)]
    params = ", ".join(f"{k}={v}" for k, v in estimator["params"].items())
    lines += ["", "## Hyperparameters", "", f"`{params}`", ""]
    return "\n".join(lines)
