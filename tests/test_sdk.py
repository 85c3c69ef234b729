"""The SDK facade (pipeserve.fit / run_pipeline / load, pipeserve.sdk.Model) and the README's example, run as is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeserve
from pipeserve import tuning
from pipeserve.errors import ConfigError, NotFound
from pipeserve.modelcard import verify_files

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The first Python block of the README's "Python SDK" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python SDK\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Python SDK section has no ```python block"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PIPESERVE_REGISTRY": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[1] == "[0]"  # the served model's answer for the first iris row
    assert lines[2] == "iris/1 True" and lines[3].startswith("iris/2 gate passed (promote)")
    assert lines[-1] == "2"  # the champion's manifest carries the registry's version
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns").is_dir()  # MLflow's defaults, here


def test_import_pipeserve_does_not_load_the_sdk() -> None:
    code = "import sys, pipeserve; print('pipeserve.sdk' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert {"fit", "run_pipeline", "load"} <= set(pipeserve.__all__)


def test_fit_packages_a_model_with_its_held_out_metrics(tmp_path: Path) -> None:
    m = pipeserve.fit("iris", params={"C": 0.5}, output=tmp_path / "repo")
    assert (m.name, m.version, m.model_dir) == ("iris", "1", tmp_path / "repo" / "iris")
    assert m.card.estimator["params"]["C"] == 0.5 and set(m.metrics) == {"accuracy", "f1_macro", "log_loss", "roc_auc"}
    verify_files(m.model_dir, m.card)
    assert m.search is None and m.registered is None and "iris v1: logistic_regression" in repr(m)


def test_fit_searches_a_grid_by_cross_validation_on_the_training_split(tmp_path: Path) -> None:
    from pipeserve import data

    m = pipeserve.fit("iris", grid={"C": [0.001, 1]}, params={"max_iter": 300}, output=tmp_path, cv_folds=3)
    assert m.search is not None and [s.params for s in m.search] == [{"max_iter": 300, "C": 0.001},
                                                                    {"max_iter": 300, "C": 1}]
    split = data.split_dataset(data.load_dataset("iris"), random_state=42)
    expected = tuning.cross_validate("classification", "logistic_regression", {"max_iter": 300, "C": 1},
                                     split.X_train, split.y_train, folds=3, random_state=42, index=1)
    assert m.search[1] == expected and m.card.estimator["params"]["C"] == 1


def test_a_temporary_model_folder_goes_with_the_model() -> None:
    import gc

    m = pipeserve.fit("iris")
    folder = m.repository
    assert folder.is_dir()
    del m
    gc.collect()
    assert not folder.exists()


def test_serve_and_predict(tmp_path: Path) -> None:
    m = pipeserve.fit("iris", output=tmp_path)
    with m.serve() as endpoint:
        assert endpoint.url.startswith("http://127.0.0.1:")
        assert endpoint.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]
        assert set(endpoint.infer([[5.1, 3.5, 1.4, 0.2]])) == {"label", "probabilities"}
        server = endpoint.server
    assert server.proc is not None and server.proc.poll() is not None  # stopped with the block


def test_register_gate_load_and_manifest(tmp_path: Path, weak_registry: str) -> None:
    weak = pipeserve.fit("iris", params={"C": 0.001}, output=tmp_path / "weak")
    good = pipeserve.fit("iris", output=tmp_path / "good")
    first = weak.register(registry=weak_registry, gate="default")
    assert (first.ref, first.promoted, first.model_version.aliases) == ("iris/1", True, ("champion",))
    second = good.register(registry=weak_registry, gate="default")
    assert second.promoted and second.verdict is not None and second.verdict.passed
    third = weak.register(registry=weak_registry, gate="default")
    assert not third.promoted and third.verdict.decision == "hold back" and third.model_version.aliases == (
        "challenger",)
    plain = good.register(registry=weak_registry, alias=None)
    assert plain.verdict is None and not plain.promoted and plain.version == "4"

    champion = pipeserve.load("iris@champion", registry=weak_registry)
    assert champion.version == "2" and champion.registered is not None and champion.registered.version == "2"
    assert champion.storage_uri is None  # a local store: a cluster cannot fetch it
    with pytest.raises(ConfigError, match="storage_uri="):
        champion.manifest()
    isvc = champion.manifest(storage_uri="s3://models/iris/", target="triton-cpu", namespace="ml")
    assert isvc["metadata"]["namespace"] == "ml"
    assert isvc["metadata"]["annotations"]["pipeserve.dev/model-version"] == "2"
    with pytest.raises(NotFound, match="no alias 'nope'"):
        pipeserve.load("iris@nope", registry=weak_registry)


def test_load_a_folder(tmp_path: Path) -> None:
    m = pipeserve.fit("iris", output=tmp_path / "repo")
    again = pipeserve.load(tmp_path / "repo")
    assert again.model_dir == m.model_dir and again.metrics == m.metrics
    (m.model_dir / "1" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(pipeserve.IntegrityError):
        pipeserve.load(tmp_path / "repo")


@pytest.mark.slow
def test_run_pipeline_returns_the_model_of_a_kfp_local_run(tmp_path: Path) -> None:
    m = pipeserve.run_pipeline("iris", output=tmp_path / "build", grid={"C": [0.1, 1]},
                               registry=str(tmp_path / "reg"), serving_target="triton-cpu")
    assert m.run is not None and m.run.registration is not None and m.run.registration.passed
    assert m.version == "1" and m.search is not None and len(m.search) == 2
    assert m.model_dir == tmp_path / "build" / "model" / "iris"


@pytest.fixture
def weak_registry(tmp_path: Path, empty_db: Path) -> str:
    """A fresh SQLite registry in tmp_path."""
    from pipeserve.registry import open_registry

    folder = tmp_path / "registry"
    folder.mkdir()
    shutil.copy(empty_db, folder / "mlflow.db")
    return open_registry(str(folder / "mlflow.db")).settings.uri
