"""Real MLflow for the registry tests: SQLite stores, and a real `mlflow server` on loopback.

The server runs from its own venv, .tools/mlflow-venv (see tests/registry/mlflow-server.txt; full
mlflow clashes with the project's pins). A migrated empty SQLite database is made once per
session and copied for each test: MLflow's 60-odd Alembic migrations take seconds per new file.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeserve.localserver import free_port
from pipeserve.modelcard import TRITON_CONFIG_FILE, hash_files, read_card, write_card
from pipeserve.registry import RegistrySettings, open_registry
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.workflow import FitResult, fit_and_package

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_VENV = ROOT / ".tools" / "mlflow-venv"
MLFLOW_BIN = MLFLOW_VENV / "bin" / "mlflow"


@pytest.fixture(scope="session")
def weak_fit(tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    """iris, LogisticRegression(C=0.001): f1_macro ~0.61, the model the gate must hold back."""
    return fit_and_package("iris", tmp_path_factory.mktemp("weak"), name="iris", params={"C": 0.001})


@pytest.fixture(scope="session")
def good_fit(iris_fit: FitResult) -> FitResult:
    """iris, LogisticRegression defaults: f1_macro ~0.97 (the shared session fixture)."""
    return iris_fit


def renamed(fit: FitResult, name: str, repository: Path) -> Path:
    """A copy of ``fit``'s model folder packaged as model ``name`` (folder, config.pbtxt, card, hashes).

    The server is shared by the session, so each server test registers models of its own name.
    """
    src = fit.model_dir
    dest = repository / name
    shutil.copytree(src, dest)
    config = dest / TRITON_CONFIG_FILE
    config.write_text(config.read_text().replace(f'name: "{src.name}"', f'name: "{name}"', 1))
    write_card(dest, dataclasses.replace(read_card(dest), name=name, files=hash_files(dest)))
    return dest


@pytest.fixture
def registry(tmp_path: Path, empty_db: Path) -> MlflowRegistry:
    """A fresh SQLite registry in tmp_path/registry (mlflow.db + mlruns/)."""
    folder = tmp_path / "registry"
    folder.mkdir()
    shutil.copy(empty_db, folder / "mlflow.db")
    return open_registry(f"sqlite:///{folder / 'mlflow.db'}")


@dataclass(frozen=True)
class MlflowServer:
    """A running `mlflow server`: its URL and the folder its artifacts land in."""

    url: str
    artifacts: Path
    log: Path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """`mlflow server` on 127.0.0.1 (free port, SQLite backend, proxied artifacts in a local folder)."""
    if not MLFLOW_BIN.is_file():
        pytest.fail(f"{MLFLOW_BIN} is missing: `make test` creates it from tests/registry/mlflow-server.txt "
                    f"(or run `make {MLFLOW_VENV.relative_to(ROOT)}/.installed`).", pytrace=False)
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = work / "server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MLFLOW_BIN), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
             "--serve-artifacts", "--artifacts-destination", str(work / "artifacts")],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield MlflowServer(url, work / "artifacts", log)
    finally:
        _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"mlflow server not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}", pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group), SIGTERM then SIGKILL."""
    import signal

    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def server_registry(mlflow_server: MlflowServer) -> MlflowRegistry:
    """A registry on the test server, resolving mlflow-artifacts: to its artifact folder's bucket stand-in."""
    return MlflowRegistry(RegistrySettings.resolve(mlflow_server.url, artifacts_destination="s3://bucket/mlartifacts"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # MLflow 3.17.2's SQL store uses SQLAlchemy's `noload`, deprecated in SQLAlchemy 2.1 (works as before).
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"))
