"""The registry's pure parts: references, settings, re-stamping, storage URIs, the alias history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeserve.errors import ConfigError, ConflictError, IntegrityError, NotFound, UserError
from pipeserve.modelcard import find_model_dirs, read_card, verify_files
from pipeserve.registry import ModelRef, RegistrySettings, parse_ref
from pipeserve.registry.base import AliasChange, check_alias
from pipeserve.registry.history import champion_stack, dump, load, rollback_target
from pipeserve.registry.locations import UnfetchableStorage, kserve_storage_uri
from pipeserve.registry.stamping import restamp, single_model_dir
from pipeserve.workflow import FitResult


@pytest.mark.parametrize(("text", "ref"), [
    ("iris@champion", ModelRef("iris", alias="champion")),
    ("iris/3", ModelRef("iris", version="3")),
    ("iris", ModelRef("iris")),
    ("models:/iris@challenger", ModelRef("iris", alias="challenger")),
    (" iris/007 ", ModelRef("iris", version="7")),
])
def test_refs_parse(text: str, ref: ModelRef) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text", ["", "iris@", "iris/", "iris/0", "iris@champion/2", "iris/x", "-iris", "iris@1a@b"])
def test_bad_refs_are_one_line_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="NAME@ALIAS") as info:
        parse_ref(text)
    assert "\n" not in str(info.value)


def test_ref_round_trips_and_names_the_mlflow_uri() -> None:
    assert str(parse_ref("iris@champion")) == "iris@champion"
    assert parse_ref("iris@champion").mlflow_uri == "models:/iris@champion"
    assert parse_ref("iris").mlflow_uri == "models:/iris/latest"


@pytest.mark.parametrize("alias", ["latest", "v3", "1st", "a b"])
def test_aliases_mlflow_reserves_or_refuses_are_refused(alias: str) -> None:
    with pytest.raises(ConfigError):
        check_alias(alias)


def test_default_store_is_mlflows_default_in_the_working_directory(tmp_path: Path) -> None:
    settings = RegistrySettings.resolve(environ={}, cwd=tmp_path)
    assert settings.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.artifact_root == (tmp_path / "mlruns").as_uri()
    assert not settings.is_remote


def test_registry_option_beats_environment_which_beats_default(tmp_path: Path) -> None:
    env = {"PIPESERVE_REGISTRY": "http://mlflow.example:5000/", "PIPESERVE_REGISTRY_ARTIFACTS": "s3://b/x",
           "PIPESERVE_ACTOR": "ci"}
    from_env = RegistrySettings.resolve(environ=env, cwd=tmp_path)
    assert (from_env.uri, from_env.is_remote, from_env.artifacts_destination, from_env.actor) == (
        "http://mlflow.example:5000", True, "s3://b/x", "ci")
    assert from_env.artifact_root is None
    explicit = RegistrySettings.resolve("reg/my.db", environ=env, cwd=tmp_path)
    assert explicit.uri == f"sqlite:///{tmp_path / 'reg' / 'my.db'}"
    assert explicit.artifact_root == (tmp_path / "reg" / "mlruns").as_uri()
    relative = RegistrySettings.resolve("sqlite:///rel.db", environ={}, cwd=tmp_path)
    assert relative.uri == f"sqlite:///{tmp_path / 'rel.db'}"
    assert RegistrySettings.resolve(str(tmp_path), environ={}).uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_credentials_never_reach_messages() -> None:
    settings = RegistrySettings.resolve("https://user:secret@mlflow.example", environ={})
    assert "secret" not in settings.display_uri


@pytest.mark.parametrize(("uri", "match"), [
    ("file:///tmp/mlruns", "file store"), ("ftp://x/y", "not supported"), ("sqlite://rel.db", "not valid"),
    ("sqlite:///:memory:", "in-memory"),
])
def test_unusable_uris_are_refused(uri: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RegistrySettings.resolve(uri, environ={})


def test_importing_the_registry_imports_no_mlflow() -> None:
    code = ("import sys, pipeserve.registry, pipeserve.gate, pipeserve.cli.models, pipeserve.registry.mlflow_registry; "
            "print([m for m in ('mlflow', 'sqlalchemy', 'sklearn') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- re-stamping -----------------------------------------------------------------------------

def test_restamp_moves_every_trace_of_the_version(iris_fit: FitResult, tmp_path: Path) -> None:
    card = restamp(iris_fit.model_dir, "7", tmp_path, lineage={"mlflow_run_id": "abc"})
    out = tmp_path / "iris"
    assert card.version == "7" and read_card(out) == card
    assert sorted(card.files) == ["7/model.onnx", "7/model.skops", "config.pbtxt"]
    assert "versions: [ 7 ]" in (out / "config.pbtxt").read_text()
    assert card.lineage["mlflow_run_id"] == "abc"
    assert card.files["7/model.onnx"] == iris_fit.card.files["1/model.onnx"]  # the bytes did not change
    verify_files(out, card)
    assert find_model_dirs(tmp_path) == [out]


def test_restamp_refuses_a_tampered_folder(iris_fit: FitResult, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src" / "iris"
    shutil.copytree(iris_fit.model_dir, src)
    (src / "1" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(IntegrityError, match="does not match its model card"):
        restamp(src, "2", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_repository_with_several_models_is_refused(iris_fit: FitResult, diabetes_fit: FitResult,
                                                     tmp_path: Path) -> None:
    import shutil

    for fit in (iris_fit, diabetes_fit):
        shutil.copytree(fit.model_dir, tmp_path / fit.model_dir.name)
    with pytest.raises(UserError, match="2 models"):
        single_model_dir(tmp_path)
    assert single_model_dir(tmp_path / "iris") == tmp_path / "iris"


# -- storage URIs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "dest", "expected"), [
    ("s3://b/1/run/artifacts/model", None, "s3://b/1/run/artifacts/model"),
    ("gs://b/m", None, "gs://b/m"),
    ("mlflow-artifacts:/1/r/artifacts/model", "s3://bucket/mlartifacts/",
     "s3://bucket/mlartifacts/1/r/artifacts/model"),
    ("mlflow-artifacts://mlflow:5000/1/r/artifacts/model", "gs://b/a", "gs://b/a/1/r/artifacts/model"),
    ("wasbs://models@acct.blob.core.windows.net/1/r", None, "https://acct.blob.core.windows.net/models/1/r"),
])
def test_storage_uris_are_what_kserve_fetches(source: str, dest: str | None, expected: str) -> None:
    assert kserve_storage_uri(source, "iris/2", dest) == expected


@pytest.mark.parametrize(("source", "dest", "match"), [
    ("file:///home/me/mlruns/1/r/artifacts/model", None, "local artifact store .* cluster cannot fetch"),
    ("/home/me/mlruns/1/r/artifacts/model", None, "cluster cannot fetch"),
    ("mlflow-artifacts:/1/r/artifacts/model", None, "PIPESERVE_REGISTRY_ARTIFACTS"),
    ("mlflow-artifacts:/1/r/artifacts/model", "/srv/mlartifacts", "cluster cannot fetch"),
    ("dbfs:/databricks/mlflow/1", None, "cannot fetch dbfs"),
])
def test_unfetchable_storage_says_so_in_one_line(source: str, dest: str | None, match: str) -> None:
    with pytest.raises(UnfetchableStorage, match=match) as info:
        kserve_storage_uri(source, "iris/2", dest)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


# -- history ---------------------------------------------------------------------------------

def _moves(*steps: tuple[str, str | None, str | None]) -> list[AliasChange]:
    return [AliasChange(i, "champion", action, old, new, "t", "me") for i, (action, old, new) in enumerate(steps, 1)]


def test_rollback_walks_back_through_the_champions() -> None:
    entries = _moves(("promote", None, "1"), ("promote", "1", "2"), ("promote", "2", "3"))
    assert champion_stack(entries) == ["1", "2", "3"]
    assert rollback_target("iris", entries, "3") == "2"
    entries += _moves(("rollback", "3", "2"))[0:1]
    assert champion_stack(entries) == ["1", "2"] and rollback_target("iris", entries, "2") == "1"


def test_rollback_refuses_when_the_alias_was_moved_outside_pipeserve() -> None:
    entries = _moves(("promote", None, "1"), ("promote", "1", "2"))
    with pytest.raises(ConflictError, match="moved outside pipeserve"):
        rollback_target("iris", entries, "5")
    with pytest.raises(NotFound, match="no earlier champion"):
        rollback_target("iris", entries[:1], "1")


def test_history_survives_trimming_and_refuses_hand_edits() -> None:
    entries = _moves(*[("promote", str(i), str(i + 1)) for i in range(400)])
    kept = load({"pipeserve.alias_history": dump(entries)})
    assert len(kept) == 300 and kept[-1].seq == 400
    assert champion_stack(kept)[-2:] == ["399", "400"]
    assert len(dump(entries)) < 100_000  # MLflow's limit on a registry tag value
    with pytest.raises(ConflictError, match="edited by hand"):
        load({"pipeserve.alias_history": json.dumps({"not": "a list"})})


def test_the_mlflow_registry_implements_the_interface(tmp_path: Path) -> None:
    from pipeserve.registry import Registry, open_registry

    reg = open_registry(str(tmp_path))
    assert isinstance(reg, Registry)
