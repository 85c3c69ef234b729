"""`pipeserve models …`: tables and JSON, the gate on promote, exit codes 0 / 1 / 2 in one line."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import run_cli, spawn_cli

from pipeserve.localserver import free_port
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.workflow import FitResult

from .conftest import MlflowServer, renamed


@pytest.fixture
def uri(registry: MlflowRegistry) -> str:
    return registry.settings.uri


def _ok(*argv: str) -> str:
    result = run_cli(*argv)
    assert result.code == 0, result.err
    return result.out


def _one_line_error(code: int, *argv: str) -> str:
    result = run_cli(*argv)
    assert result.code == code, (result.out, result.err)
    [line] = result.err.strip().splitlines()
    return line


def test_register_list_show_history(uri: str, weak_fit: FitResult, good_fit: FitResult) -> None:
    out = _ok("models", "register", str(weak_fit.model_dir), "--registry", uri)
    assert out.startswith(f"Registered iris version 1 in {uri}\n")
    registered = json.loads(_ok("models", "register", str(good_fit.model_dir.parent), "--alias", "challenger",
                                "--registry", uri, "--output", "json"))
    assert (registered["version"], registered["aliases"], registered["status"]) == ("2", ["challenger"], "ready")

    table = _ok("models", "list", "iris", "--registry", uri).splitlines()
    assert table[0].split() == ["VERSION", "ALIASES", "STATUS", "CREATED", "ESTIMATOR", "ACCURACY", "F1_MACRO",
                                "LOG_LOSS", "ROC_AUC"]
    assert [row.split()[:3] for row in table[1:]] == [["2", "challenger", "ready"], ["1", "-", "ready"]]
    listed = json.loads(_ok("models", "list", "iris", "--registry", uri, "--output", "json"))
    assert [v["version"] for v in listed] == ["2", "1"]

    show = _ok("models", "show", "iris@challenger", "--registry", uri)
    assert re.search(r"^model +iris/2$", show, re.M) and "f1_macro 0.9666" in show and "\n  2/model.onnx " in show
    assert re.search(r"^storage uri +\(none\) iris/2 is in a local artifact store", show, re.M)
    shown = json.loads(_ok("models", "show", "iris/1", "--registry", uri, "--output", "json"))
    assert shown["storage_uri"] is None and "cluster cannot fetch" in shown["storage_uri_error"]
    assert shown["metrics"]["f1_macro"] == pytest.approx(weak_fit.card.metrics["f1_macro"])

    history = _ok("models", "history", "iris", "--registry", uri).splitlines()
    assert history[0].split() == ["SEQ", "AT", "ALIAS", "ACTION", "FROM", "TO", "ACTOR", "REASON"]
    assert history[1].split()[2:6] == ["challenger", "register", "-", "2"]
    champion = _ok("models", "history", "iris", "--alias", "champion", "--registry", uri, "--output", "json")
    assert json.loads(champion) == []


def test_promote_with_the_gate_rollback_and_promote_again(uri: str, weak_fit: FitResult, good_fit: FitResult) -> None:
    """The issue's done-when, on the command line: 1 weak, 2 good, 3 weak."""
    for fit in (weak_fit, good_fit, weak_fit):
        _ok("models", "register", str(fit.model_dir), "--alias", "challenger", "--registry", uri)
    out = _ok("models", "promote", "iris", "1", "--gate", "--registry", uri)
    assert out == "gate passed (promote): f1_macro>=champion: 0.6105 vs — (no champion to compare with)\n" \
                  "iris@champion: unset → 1 (promote, #4)\n"
    assert "iris@champion: 1 → 2" in _ok("models", "promote", "iris", "2", "--gate", "--registry", uri)

    held = json.loads(_ok("models", "promote", "iris", "3", "--gate", "f1_macro>=champion; log_loss<=champion+0.02",
                          "--registry", uri, "--output", "json"))
    assert held["promoted"] is False and held["to"] == "2" and held["verdict"]["decision"] == "hold back"
    out = _ok("models", "promote", "iris", "3", "--gate", "--registry", uri)
    assert out.endswith("iris@champion stays 2: version 3 was held back.\n")

    assert _ok("models", "rollback", "iris", "--reason", "incident 42", "--registry", uri).startswith(
        "iris@champion: 2 → 1 (rollback")
    assert "iris@champion: 1 → 2" in _ok("models", "promote", "iris", "2", "--registry", uri)
    assert _ok("models", "promote", "iris", "2", "--registry", uri) == "iris@champion is already 2; nothing changed.\n"
    champion = [e for e in json.loads(_ok("models", "history", "iris", "--registry", uri, "--output", "json"))
                if e["alias"] == "champion"]
    assert [(e["action"], e["to_version"]) for e in champion] == [
        ("promote", "1"), ("promote", "2"), ("rollback", "1"), ("promote", "2")]
    assert champion[2]["reason"] == "incident 42"


def test_a_lost_compare_and_set_exits_1_in_one_line(uri: str, good_fit: FitResult) -> None:
    for _ in range(2):
        _ok("models", "register", str(good_fit.model_dir), "--registry", uri)
    line = _one_line_error(1, "models", "promote", "iris", "2", "--expect", "1", "--registry", uri)
    assert line.startswith(
        "pipeserve models promote: error: Cannot move iris@champion to 2: it points to nothing, not 1")
    _ok("models", "promote", "iris", "1", "--expect", "none", "--registry", uri)


@pytest.mark.parametrize(("argv", "match"), [
    (("show", "iris@@"), "Model reference 'iris@@' is not valid"),
    (("promote", "iris", "two"), "VERSION must be a version number"),
    (("promote", "iris", "1", "--gate", "f1>=champion"), "no metric 'f1'"),
    (("list", "wine"), "No model 'wine' in the registry"),
    (("show", "iris/7"), r"iris has no version 7 \(versions: 1\)"),
    (("rollback", "iris"), "no earlier champion"),
    (("register", "/nonexistent/iris"), "does not exist"),
])
def test_bad_input_exits_2_in_one_line(uri: str, good_fit: FitResult, argv: tuple[str, ...], match: str) -> None:
    _ok("models", "register", str(good_fit.model_dir), "--registry", uri)
    assert re.search(match, _one_line_error(2, "models", *argv, "--registry", uri))


@pytest.mark.parametrize("argv", [("list", "iris"), ("show", "iris@champion"), ("history", "iris"),
                                  ("promote", "iris", "2"), ("rollback", "iris"), ("register", "MODEL")])
def test_an_unreachable_registry_exits_1_in_one_line_and_writes_nothing(
        argv: tuple[str, ...], good_fit: FitResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "repo" / "iris"
    shutil.copytree(good_fit.model_dir, src)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = tuple(str(src) if a == "MODEL" else a for a in argv)
    line = _one_line_error(1, "models", *argv, "--registry", f"http://127.0.0.1:{free_port()}")
    assert f"pipeserve models {argv[0]}: error: MLflow registry http://127.0.0.1:" in line
    assert "is unreachable (Connection refused)" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_default_registry_is_mlflow_db_in_the_working_directory(empty_db: Path, good_fit: FitResult, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPESERVE_REGISTRY", raising=False)
    shutil.copy(empty_db, tmp_path / "mlflow.db")  # skips the migrations; MLflow would create the same file
    result = run_cli("models", "register", str(good_fit.model_dir), cwd=tmp_path)
    assert result.code == 0 and f"in sqlite:///{tmp_path / 'mlflow.db'}" in result.out
    assert list((tmp_path / "mlruns").glob("*/artifacts/model/iris/1/model.onnx"))
    monkeypatch.setenv("PIPESERVE_REGISTRY", str(tmp_path))
    assert json.loads(_ok("models", "list", "iris", "--output", "json"))[0]["version"] == "1"


def test_models_without_a_command_shows_help() -> None:
    result = run_cli("models")
    assert result.code == 2 and "promote" in result.out and "rollback" in result.out


def test_json_output_stays_clean_against_a_server(mlflow_server: MlflowServer, good_fit: FitResult,
                                                  tmp_path: Path) -> None:
    model = renamed(good_fit, "cli-json", tmp_path)
    registered = json.loads(_ok("models", "register", str(model), "--registry", mlflow_server.url, "--output", "json"))
    assert registered["name"] == "cli-json" and registered["source"].startswith("mlflow-artifacts:/")
    shown = json.loads(_ok("models", "show", "cli-json/1", "--registry", mlflow_server.url, "--output", "json",
                           "--artifacts-destination", "gs://models/mlartifacts"))
    assert shown["storage_uri"].startswith("gs://models/mlartifacts/") and shown["storage_uri_error"] is None


@pytest.mark.slow
def test_an_unreachable_registry_is_one_line_from_a_real_process(good_fit: FitResult, tmp_path: Path) -> None:
    """MLflow's default retries and urllib3's warnings stay out of the way: stderr is one line."""
    result = spawn_cli("models", "register", str(good_fit.model_dir), "--registry", f"http://127.0.0.1:{free_port()}",
                       cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("pipeserve models register: error: MLflow registry http://127.0.0.1:")
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "flags"), [
    (("promote", "iris", "1", "--target", "triton-cpu"), "--target"),
    (("promote", "iris", "1", "--canary", "10", "--no-smoke"), "--canary, --no-smoke"),
    (("promote", "iris", "1", "--name", "iris-prod", "--node-selector", "pool=a"), "--name, --node-selector"),
    (("rollback", "iris", "--storage-uri", "s3://m/iris/", "--context", "prod"), "--context, --storage-uri"),
])
def test_cluster_options_without_a_namespace_exit_2_and_move_nothing(uri: str, good_fit: FitResult,
                                                                     argv: tuple[str, ...], flags: str) -> None:
    for _ in range(2):
        _ok("models", "register", str(good_fit.model_dir), "--registry", uri)
    _ok("models", "promote", "iris", "2", "--registry", uri)
    line = _one_line_error(2, "models", *argv, "--registry", uri)
    assert line.endswith(f"error: {flags} act on the served InferenceService: add --namespace NS (without it, "
                         f"{argv[0]} only moves the alias).")
    assert json.loads(_ok("models", "show", "iris@champion", "--registry", uri, "--output", "json"))["version"] == "2"


def test_rollouts_are_recorded_on_the_version_and_shown(registry: MlflowRegistry, good_fit: FitResult,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeserve.registry import rollouts as history
    from pipeserve.registry.rollouts import RolloutRecord, record_rollout, rollouts

    monkeypatch.setattr(history, "MAX_RECORDS", 5)  # the trimming below, without 100 writes

    registry.register(good_fit.model_dir)
    record = RolloutRecord(action="promote", outcome="serving", namespace="ml", inference_service="iris",
                           cluster="https://10.0.0.1:6443", context="prod", mode="Standard", traffic_percent=100,
                           seconds=0.8)
    stamped = record_rollout(registry, "iris", "1", record)
    assert stamped.at.endswith("Z") and stamped.actor == registry.settings.actor
    assert rollouts(registry, "iris", "1") == [stamped]
    tags = registry.get("iris/1").tags
    assert tags["pipeserve.rollout.where"] == "ml/iris on prod (https://10.0.0.1:6443)"
    assert (tags["pipeserve.rollout.outcome"], tags["pipeserve.rollout.action"]) == ("serving", "promote")
    show = _ok("models", "show", "iris/1", "--registry", registry.settings.uri)
    assert re.search(r"^last rollout +serving in ml/iris on prod \(https://10.0.0.1:6443\) \(promote, .+, by ", show,
                     re.M)
    for n in range(8):
        record_rollout(registry, "iris", "1", dataclasses.replace(record, outcome="failed", reason=f"try {n}"))
    kept = rollouts(registry, "iris", "1")
    assert [r.reason for r in kept] == [f"try {n}" for n in range(3, 8)]
