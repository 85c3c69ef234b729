"""Shared fixtures: tiny real models packaged once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from interop import share_inference_protos

from pipeserve.workflow import FitResult, fit_and_package

# kserve (its clients and ModelServer, the interop peers) and tritonclient.grpc (v2 clients, server
# stubs) both run in this process; see tests/interop.py.
share_inference_protos()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A real `mlflow server` takes seconds to start: a test that needs one is slow (not in make test-fast).
    for item in items:
        if "mlflow_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite database: copy it, never write to it (the migrations take seconds)."""
    from pipeserve.registry import open_registry

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    open_registry(str(path)).check()  # creates the tables (runs the migrations)
    return path


@pytest.fixture(scope="session")
def iris_fit(tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    """LogisticRegression on iris, packaged as <repo>/iris/ (INT64 labels, 3 classes)."""
    return fit_and_package("iris", tmp_path_factory.mktemp("iris-repo"), name="iris")


@pytest.fixture(scope="session")
def iris_repo(iris_fit: FitResult) -> Path:
    """A model repository holding iris/ (do not modify: shared by the whole session)."""
    return iris_fit.model_dir.parent


@pytest.fixture(scope="session")
def iris_split(iris_fit: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """(X_test float32, y_test) of the split the iris model was evaluated on."""
    return iris_fit.split.X_test, iris_fit.split.y_test


@pytest.fixture(scope="session")
def diabetes_fit(tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    """Ridge on diabetes, packaged as <repo>/diabetes/ (output "prediction" FP32 [-1])."""
    return fit_and_package("diabetes", tmp_path_factory.mktemp("diabetes-repo"), name="diabetes")


@pytest.fixture(scope="session")
def diabetes_repo(diabetes_fit: FitResult) -> Path:
    """A model repository holding diabetes/ (do not modify)."""
    return diabetes_fit.model_dir.parent
