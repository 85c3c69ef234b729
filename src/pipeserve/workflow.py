"""The whole library path in one call: load → split → train → evaluate → package.

The KFP components run the same steps one by one (each in its own pod); this function is for the
Python SDK, notebooks and tests, where one process does everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeserve import data as data_mod
from pipeserve import evaluation, packaging, runtimes, training
from pipeserve.lineage import data_lineage
from pipeserve.modelcard import ModelCard

__all__ = ["FitResult", "data_lineage", "default_model_name", "fit_and_package"]


@dataclass(frozen=True)
class FitResult:
    """What fit_and_package produced."""

    card: ModelCard
    split: data_mod.Split
    evaluation: evaluation.Evaluation
    model_dir: Path
    model: Any


def fit_and_package(
    source: str,
    repository: str | Path,
    *,
    target: str | None = None,
    task: str | None = None,
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
    name: str | None = None,
    version: str = "1",
    test_size: float = 0.2,
    random_state: int = 42,
    max_batch_size: int = 0,
    lineage: dict[str, str] | None = None,
    serving_target: str = "triton-gpu",
    runtime_version: str | None = None,
) -> FitResult:
    """Train a catalogue estimator on a dataset and package it into ``repository``.

    Args:
        source: Built-in dataset name, CSV/Parquet path or fsspec URL.
        repository: Model repository folder; the model lands in ``<repository>/<name>/``.
        target: Target column (files only).
        task: ``classification`` or ``regression``; inferred when omitted.
        estimator: Catalogue name; the task's default when omitted.
        params: Hyperparameters, checked against the estimator.
        name: Model name; defaults to the dataset name (files: the file stem).
        version: Model version (positive integer).
        test_size: Fraction held out for evaluation and the parity check.
        random_state: Seed of the split.
        max_batch_size: Triton max_batch_size (0: no Triton batching).
        lineage: Provenance recorded in the card.
        serving_target: Where the model will be served (triton-gpu, triton-cpu, pipeserve,
            sklearnserver): the ONNX file is converted for that runtime's ONNX Runtime.
        runtime_version: The runtime's image tag (default: what stock KServe 0.21 runs).
    """
    onnx_target = runtimes.onnx_target(runtimes.runtime_for_target(serving_target), runtime_version)
    ds = data_mod.load_dataset(source, target=target, task=task)
    split = data_mod.split_dataset(ds, test_size=test_size, random_state=random_state)
    estimator = estimator or training.DEFAULT_ESTIMATOR[ds.task]
    model = training.train(ds.task, estimator, params, split.X_train, split.y_train)
    result = evaluation.evaluate(model, split.X_test, split.y_test, ds.task)
    name = name or default_model_name(source)
    request = packaging.PackageRequest(
        name=name,
        version=version,
        task=ds.task,
        estimator=training.describe(estimator, model),
        metrics=result.metrics,
        feature_names=split.feature_names,
        data=data_lineage(ds, test_size, random_state),
        lineage=lineage,
        max_batch_size=max_batch_size,
        onnx_target=onnx_target,
    )
    card = packaging.package_model(model, split.X_test, request, repository)
    return FitResult(card, split, result, Path(repository) / name, model)


def default_model_name(source: str) -> str:
    """iris -> iris; s3://bucket/My_Data.csv -> my-data."""
    import re

    stem = source.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:63] or "model"
