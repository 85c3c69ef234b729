"""The registry on a real MLflow SQLite store: register, aliases, rollback, downloads, failures."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from pipeserve import gate
from pipeserve.errors import ConflictError, IntegrityError, NotFound, RegistryError, UserError
from pipeserve.modelcard import find_model_dirs, read_card, sha256_file, verify_files, write_card
from pipeserve.registry import CHALLENGER, CHAMPION, open_registry
from pipeserve.registry.locations import UnfetchableStorage
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.workflow import FitResult


def _artifact_dir(reg: MlflowRegistry, ref: str) -> Path:
    """Where the SQLite store keeps a version's model folder on disk (file:// source)."""
    mv = reg.get(ref)
    return Path(mv.source.removeprefix("file://")) / mv.name


def test_register_lets_mlflow_number_versions_and_restamps_the_folder(registry: MlflowRegistry, weak_fit: FitResult,
                                                                     good_fit: FitResult, tmp_path: Path) -> None:
    v1 = registry.register(weak_fit.model_dir)
    v2 = registry.register(good_fit.model_dir, alias=CHALLENGER)  # packaged as version 1 too
    assert (v1.version, v2.version) == ("1", "2")
    assert v2.aliases == (CHALLENGER,) and v2.status == "ready"
    assert v2.task == "classification" and v2.estimator == "logistic_regression"
    assert v2.metrics == pytest.approx(good_fit.card.metrics)
    assert v2.data_fingerprint == good_fit.card.data["fingerprint"]
    assert sorted(v2.files) == ["2/model.onnx", "2/model.skops", "config.pbtxt"]

    stored = _artifact_dir(registry, "iris/2")
    card = read_card(stored)
    assert card.version == "2" and card.files == v2.files
    assert sorted(p.name for p in stored.iterdir() if p.is_dir()) == ["2"]
    assert "versions: [ 2 ]" in (stored / "config.pbtxt").read_text()
    verify_files(stored, card)
    assert read_card(good_fit.model_dir).version == "1"  # the source folder is left alone


def test_metrics_and_params_land_in_the_mlflow_run(registry: MlflowRegistry, good_fit: FitResult) -> None:
    mv = registry.register(good_fit.model_dir)
    run = registry._client().get_run(mv.run_id)
    assert run.data.metrics == pytest.approx(good_fit.card.metrics)
    assert run.data.params["estimator"] == "logistic_regression" and run.data.params["C"] == "1.0"
    assert run.data.tags["pipeserve.library.scikit-learn"] == good_fit.card.libraries["scikit-learn"]
    assert run.data.tags["mlflow.runName"] == "iris-v1" and run.info.status == "FINISHED"
    assert read_card(_artifact_dir(registry, "iris/1")).lineage["mlflow_run_id"] == mv.run_id


def test_get_by_alias_version_and_latest(registry: MlflowRegistry, weak_fit: FitResult, good_fit: FitResult) -> None:
    registry.register(weak_fit.model_dir, alias=CHALLENGER)
    registry.register(good_fit.model_dir)
    assert registry.get("iris").version == "2"
    assert registry.get("iris/1").version == registry.get("iris@challenger").version == "1"
    assert [v.version for v in registry.versions("iris")] == ["2", "1"]
    with pytest.raises(NotFound, match=r"no alias 'champion' \(aliases: challenger→1\)"):
        registry.get("iris@champion")
    with pytest.raises(NotFound, match=r"no version 9 \(versions: 1, 2\)"):
        registry.get("iris/9")
    with pytest.raises(NotFound, match="No model 'wine'"):
        registry.versions("wine")


def test_gate_promotes_better_and_holds_back_worse_then_rollback_and_promote(
        registry: MlflowRegistry, weak_fit: FitResult, good_fit: FitResult) -> None:
    """The issue's done-when, on the library: weak v1 champion, v2 promoted, weak v3 held back."""

    def run(fit: FitResult) -> gate.Verdict:
        mv = registry.register(fit.model_dir, alias=CHALLENGER)
        champion = gate.champion_from_registry(registry, "iris")
        verdict = gate.evaluate(mv.metrics, champion, task=mv.task, challenger_label=f"iris/{mv.version}")
        if verdict.passed:
            registry.promote("iris", mv.version, expected=champion.version if champion else None)
        return verdict

    first = run(weak_fit)
    assert first.passed and first.champion is None
    assert registry.aliases("iris") == {CHAMPION: "1"}  # promoting the challenger clears that alias
    assert run(good_fit).passed
    held = run(weak_fit)
    assert not held.passed and "f1_macro>=champion" in held.summary()
    assert registry.aliases("iris") == {CHAMPION: "2", CHALLENGER: "3"}

    back = registry.rollback("iris", reason="v2 misbehaves")
    assert (back.from_version, back.to_version, back.action) == ("2", "1", "rollback")
    assert registry.get("iris@champion").version == "1"
    registry.promote("iris", "2", expected="1")
    assert registry.get("iris@champion").version == "2"
    moves = [(e.action, e.from_version, e.to_version) for e in registry.history("iris", CHAMPION)]
    assert moves == [("promote", None, "1"), ("promote", "1", "2"), ("rollback", "2", "1"), ("promote", "1", "2")]
    seqs = [e.seq for e in registry.history("iris")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_rollback_restores_exactly_the_previous_champion(registry: MlflowRegistry, weak_fit: FitResult,
                                                          good_fit: FitResult) -> None:
    for fit in (weak_fit, good_fit, weak_fit):
        registry.register(fit.model_dir)
    with pytest.raises(NotFound):
        registry.rollback("iris")  # no champion at all yet
    for version in ("1", "3", "2"):
        registry.promote("iris", version)
    assert [registry.rollback("iris").to_version for _ in range(2)] == ["3", "1"]
    with pytest.raises(NotFound, match="no earlier champion"):
        registry.rollback("iris")
    assert registry.get("iris@champion").version == "1"


def test_rollback_refuses_after_an_alias_moved_outside_pipeserve(registry: MlflowRegistry, weak_fit: FitResult) -> None:
    for _ in range(3):
        registry.register(weak_fit.model_dir)
    registry.promote("iris", "1")
    registry.promote("iris", "2")
    registry._client().set_registered_model_alias("iris", CHAMPION, "3")  # the MLflow UI, say
    with pytest.raises(ConflictError, match="moved outside pipeserve"):
        registry.rollback("iris")
    registry.promote("iris", "2")  # an explicit promote puts history and alias back in step ...
    assert registry.rollback("iris").to_version == "3"  # ... and 3 did hold the alias before it
    assert registry.rollback("iris").to_version == "2"


def test_a_stale_expectation_fails_instead_of_overwriting(registry: MlflowRegistry, weak_fit: FitResult) -> None:
    for _ in range(3):
        registry.register(weak_fit.model_dir)
    registry.promote("iris", "1", expected=None)
    seen = registry.aliases("iris").get(CHAMPION)
    registry.promote("iris", "2", expected=seen, actor="alice", reason="better")
    moved_by_alice = r"points to 2, not 1 as read before \(moved by alice at .*promote: better\)"
    with pytest.raises(ConflictError, match=moved_by_alice) as info:
        registry.promote("iris", "3", expected=seen)
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    assert registry.get("iris@champion").version == "2"
    assert registry.promote("iris", "2") is None  # already there: nothing recorded
    assert len(registry.history("iris", CHAMPION)) == 2


def test_download_is_a_servable_verified_repository(registry: MlflowRegistry, good_fit: FitResult,
                                                    tmp_path: Path) -> None:
    registry.register(good_fit.model_dir)
    registry.register(good_fit.model_dir)
    registry.promote("iris", "2")
    model_dir = registry.download("iris@champion", tmp_path / "served")
    assert model_dir == tmp_path / "served" / "iris"
    assert find_model_dirs(tmp_path / "served") == [model_dir]
    card = read_card(model_dir)
    verify_files(model_dir, card)
    assert card.version == "2" and (model_dir / "2" / "model.onnx").is_file()
    registry.download("iris/1", tmp_path / "served")  # replaces the folder whole
    assert read_card(model_dir).version == "1" and not (model_dir / "2").exists()


def test_a_tampered_artifact_is_refused_in_one_line(registry: MlflowRegistry, good_fit: FitResult,
                                                    tmp_path: Path) -> None:
    registry.register(good_fit.model_dir)
    stored = _artifact_dir(registry, "iris/1")
    onnx = stored / "1" / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    tampered = r"iris/1 in the registry was tampered with: .*1/model.onnx: sha256"
    with pytest.raises(IntegrityError, match=tampered) as info:
        registry.download("iris/1", tmp_path / "a")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "a" / "iris").exists()

    # Re-writing the card to match the tampered file does not help: the registry holds the card's sha256.
    card = read_card(stored)
    write_card(stored, dataclasses.replace(card, files={**card.files, "1/model.onnx": sha256_file(onnx)}))
    with pytest.raises(IntegrityError, match="model card of iris/1 was changed after registration"):
        registry.download("iris/1", tmp_path / "b")


def test_a_tampered_source_folder_is_never_registered(registry: MlflowRegistry, good_fit: FitResult,
                                                      tmp_path: Path) -> None:
    src = tmp_path / "repo" / "iris"
    shutil.copytree(good_fit.model_dir, src)
    (src / "1" / "model.skops").write_bytes(b"changed")
    with pytest.raises(IntegrityError):
        registry.register(src)
    assert registry._client().search_registered_models() == []


def test_a_failed_register_leaves_no_version_run_or_artifacts(registry: MlflowRegistry, good_fit: FitResult,
                                                               weak_fit: FitResult,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register(weak_fit.model_dir)
    client = registry._client()
    real = client.log_artifacts

    def upload_then_fail(run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        real(run_id, local_dir, artifact_path)  # the files land, then the connection drops
        raise ConnectionError("Connection reset by peer")

    monkeypatch.setattr(client, "log_artifacts", upload_then_fail)
    with pytest.raises(RegistryError, match="unreachable") as info:
        registry.register(good_fit.model_dir)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert [v.version for v in registry.versions("iris")] == ["1"]
    runs = client.search_runs([client.get_experiment_by_name("pipeserve").experiment_id])
    assert len(runs) == 1  # the failed run is deleted
    mlruns = Path(registry.settings.artifact_root.removeprefix("file://"))
    assert sorted(p.parent.parent.name for p in mlruns.glob("*/artifacts/model")) == [runs[0].info.run_id]
    assert registry.register(good_fit.model_dir).version == "3"  # numbers are never reused


def test_a_failed_first_register_leaves_no_model(registry: MlflowRegistry, good_fit: FitResult,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client = registry._client()
    monkeypatch.setattr(client, "create_model_version", _boom)
    with pytest.raises(RegistryError):
        registry.register(good_fit.model_dir)
    assert client.search_registered_models() == []


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("disk full")


def test_a_pending_version_is_never_served_or_promoted(registry: MlflowRegistry, good_fit: FitResult,
                                                       tmp_path: Path) -> None:
    registry.register(good_fit.model_dir)
    registry.register(good_fit.model_dir)
    registry._client().set_model_version_tag("iris", "2", "pipeserve.status", "pending")
    assert registry.get("iris").version == "1"  # latest *ready*
    for call in (lambda: registry.promote("iris", "2"), lambda: registry.download("iris/2", tmp_path)):
        with pytest.raises(UserError, match="registration did not finish"):
            call()


def test_a_local_store_says_a_cluster_cannot_fetch_it(registry: MlflowRegistry, good_fit: FitResult) -> None:
    registry.register(good_fit.model_dir)
    local = r"iris/1 is in a local artifact store \(file://.*cluster cannot fetch"
    with pytest.raises(UnfetchableStorage, match=local):
        registry.storage_uri("iris/1")


def test_an_unreachable_registry_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The configured retries still run, without the backoff sleeps between them.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    from pipeserve.localserver import free_port

    reg = open_registry(f"http://127.0.0.1:{free_port()}")
    unreachable = r"^MLflow registry http://127.0.0.1:\d+ is unreachable \(Connection refused\)"
    with pytest.raises(RegistryError, match=unreachable) as info:
        reg.versions("iris")
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    blocked = tmp_path / "file"
    blocked.write_text("")
    cannot_open = r"^MLflow registry sqlite:///.* failed to open the registry: .*File exists"
    with pytest.raises(RegistryError, match=cannot_open):
        open_registry(f"sqlite:///{blocked}/mlflow.db").versions("iris")


def test_mlflows_own_client_reads_the_same_aliases_and_artifacts(registry: MlflowRegistry, weak_fit: FitResult,
                                                                  good_fit: FitResult, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register(weak_fit.model_dir)
    registry.register(good_fit.model_dir, alias=CHALLENGER)
    registry.promote("iris", "1")
    registry.promote("iris", "2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.settings.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry.settings.uri)
    import mlflow
    from mlflow import MlflowClient

    assert MlflowClient().get_model_version_by_alias("iris", "champion").version == 2
    assert MlflowClient().get_registered_model("iris").aliases == {"champion": 2}
    path = Path(mlflow.artifacts.download_artifacts("models:/iris@champion", dst_path=str(tmp_path / "dl")))
    [model_dir] = find_model_dirs(path)
    card = read_card(model_dir)
    verify_files(model_dir, card)
    assert (card.name, card.version) == ("iris", "2")
    assert sorted(card.files) == ["2/model.onnx", "2/model.skops", "config.pbtxt"]
    assert json.loads(MlflowClient().get_model_version("iris", "2").tags["pipeserve.files"]) == card.files
