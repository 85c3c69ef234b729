"""The registry against a real `mlflow server` (loopback, SQLite backend, proxied local artifacts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeserve.errors import IntegrityError, RegistryError
from pipeserve.modelcard import find_model_dirs, read_card, verify_files
from pipeserve.registry import CHALLENGER, CHAMPION, open_registry
from pipeserve.registry.locations import UnfetchableStorage
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.workflow import FitResult

from .conftest import MlflowServer, renamed
from .test_concurrency import check_cli_race

DESTINATION = "s3://bucket/mlartifacts"


def _local(storage_uri: str, server: MlflowServer) -> Path:
    """The server's local artifacts folder stands in for the bucket: map the s3:// URI onto it."""
    assert storage_uri.startswith(DESTINATION + "/")
    return server.artifacts / storage_uri[len(DESTINATION) + 1:]


def test_register_promote_download_through_the_server(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                                      weak_fit: FitResult, good_fit: FitResult, tmp_path: Path) -> None:
    v1 = server_registry.register(renamed(weak_fit, "flow", tmp_path / "a"))
    v2 = server_registry.register(renamed(good_fit, "flow", tmp_path / "b"), alias=CHALLENGER)
    assert (v1.version, v2.version) == ("1", "2") and v2.source.startswith("mlflow-artifacts:/")
    server_registry.promote("flow", "1", expected=None)
    server_registry.promote("flow", "2", expected="1")
    assert server_registry.aliases("flow") == {CHAMPION: "2"}
    assert server_registry.rollback("flow").to_version == "1"

    model_dir = server_registry.download("flow/2", tmp_path / "served")
    card = read_card(model_dir)
    assert (card.name, card.version) == ("flow", "2")
    verify_files(model_dir, card)


def test_storage_uri_resolves_to_the_artifacts_destination(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                                           good_fit: FitResult, tmp_path: Path) -> None:
    server_registry.register(renamed(good_fit, "where", tmp_path))
    uri = server_registry.storage_uri("where/1")
    assert uri.startswith(DESTINATION + "/") and uri.endswith("/artifacts/model")
    stored = _local(uri, mlflow_server)  # what KServe would download: a repository holding where/
    assert find_model_dirs(stored) == [stored / "where"]
    verify_files(stored / "where", read_card(stored / "where"))

    plain = open_registry(mlflow_server.url)  # no --artifacts-destination given
    # The bucket path was recorded on the version when it was registered: readers need not know it.
    assert plain.storage_uri("where/1") == uri
    plain.register(renamed(good_fit, "where", tmp_path / "again"))  # registered where nobody knew it
    with pytest.raises(UnfetchableStorage, match="PIPESERVE_REGISTRY_ARTIFACTS") as info:
        plain.storage_uri("where/2")
    assert "\n" not in str(info.value)


def test_mlflows_own_client_reads_the_server(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                             good_fit: FitResult, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server_registry.register(renamed(good_fit, "interop", tmp_path / "a"))
    server_registry.register(renamed(good_fit, "interop", tmp_path / "b"))
    server_registry.promote("interop", "2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    import mlflow
    from mlflow import MlflowClient

    assert str(MlflowClient().get_model_version_by_alias("interop", "champion").version) == "2"
    path = Path(mlflow.artifacts.download_artifacts("models:/interop@champion", dst_path=str(tmp_path / "dl")))
    [model_dir] = find_model_dirs(path)
    card = read_card(model_dir)
    verify_files(model_dir, card)
    assert card.version == "2" and (model_dir / "2" / "model.onnx").is_file()


def test_a_tampered_artifact_on_the_server_is_refused(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                                      good_fit: FitResult, tmp_path: Path) -> None:
    server_registry.register(renamed(good_fit, "tamper", tmp_path))
    stored = _local(server_registry.storage_uri("tamper/1"), mlflow_server) / "tamper"
    (stored / "config.pbtxt").write_text((stored / "config.pbtxt").read_text() + "# edited\n")
    with pytest.raises(IntegrityError, match=r"tamper/1 in the registry was tampered with: .*config.pbtxt: sha256"):
        server_registry.download("tamper/1", tmp_path / "out")


def test_a_failed_register_on_the_server_leaves_nothing(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                                        good_fit: FitResult, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server_registry.register(renamed(good_fit, "orphan", tmp_path / "a"))
    client = server_registry._client()
    real = client.set_model_version_tag

    def fail_on_ready(name: str, version: str, key: str, value: str) -> None:
        if key == "pipeserve.status":
            raise RegistryError("the server went away")
        real(name, version, key, value)

    monkeypatch.setattr(client, "set_model_version_tag", fail_on_ready)
    with pytest.raises(RegistryError, match="went away"):
        server_registry.register(renamed(good_fit, "orphan", tmp_path / "b"))
    monkeypatch.undo()
    assert [v.version for v in server_registry.versions("orphan")] == ["1"]
    kept = [p for p in mlflow_server.artifacts.rglob("orphan") if p.is_dir()]
    assert len(kept) == 1  # version 2's uploaded files were deleted from the artifact store


def test_two_promote_processes_on_one_server(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                             good_fit: FitResult, tmp_path: Path) -> None:
    for i in range(3):
        server_registry.register(renamed(good_fit, "iris", tmp_path / str(i)))
    server_registry.promote("iris", "1", expected=None)
    check_cli_race(mlflow_server.url, server_registry)

