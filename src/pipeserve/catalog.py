"""Names every part of pipeserve agrees on: tasks and built-in datasets (no heavy imports here).

The CLI builds its help from these, so they must stay importable without pandas or scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
BUILTIN_TARGET = "target"


def _builtin(loader_name: str) -> Callable[[], Any]:
    def load() -> Any:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)(as_frame=True)
        return bunch.frame

    return load


# name -> (task, loader); the frame has the features and a "target" column.
BUILTIN_DATASETS: dict[str, tuple[str, Callable[[], Any]]] = {
    "iris": (CLASSIFICATION, _builtin("load_iris")),
    "breast_cancer": (CLASSIFICATION, _builtin("load_breast_cancer")),
    "wine": (CLASSIFICATION, _builtin("load_wine")),
    "digits": (CLASSIFICATION, _builtin("load_digits")),
    "diabetes": (REGRESSION, _builtin("load_diabetes")),
}
