"""The pipeline's register, gate and promote steps, called directly on a real SQLite registry, and
run as a pod runs them (their archive, their pins) against a real `mlflow server`; the champion as
served (an InferenceService's annotations); registry references for serve, manifest and the SDK."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import run_cli
from kfp import dsl

from pipeserve import gate
from pipeserve.components import gate as gate_step
from pipeserve.components import promote, register
from pipeserve.errors import ConflictError, IntegrityError
from pipeserve.kube.builder import ANNOTATION_PREFIX, files_digest
from pipeserve.modelcard import read_card, verify_files
from pipeserve.registry import CHALLENGER, CHAMPION, is_model_ref, mlflow_registry, resolve
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.workflow import FitResult

from .conftest import MlflowServer, renamed


def _artifact(cls: type, tmp_path: Path, name: str) -> Any:
    return cls(name=name, uri=str(tmp_path / name), metadata={})


def _packaged(fit: FitResult, tmp_path: Path, name: str) -> Any:
    """A packaged_model artifact holding a copy of ``fit``'s repository."""
    artifact = _artifact(dsl.Model, tmp_path, name)
    shutil.copytree(fit.model_dir.parent, artifact.path)
    return artifact


def _register_gate_promote(registry: MlflowRegistry, fit: FitResult, tmp_path: Path, tag: str,
                           rule: str = "default") -> dict[str, Any]:
    """The registry part of the pipeline for one run: register → gate → (promote if it passed)."""
    uri = registry.settings.uri
    registered = _artifact(dsl.Model, tmp_path, f"registered-{tag}")
    out = register.python_func(packaged_model=_packaged(fit, tmp_path, f"packaged-{tag}"), registry=uri,
                               model_name="iris", registered_model=registered, storage_uri="s3://fallback/iris/",
                               pipeline_run=f"run-{tag}")
    decision = _artifact(dsl.Markdown, tmp_path, f"decision-{tag}")
    verdict = gate_step.python_func(registered_model=registered, model_name="iris", decision=decision,
                                    champion_json=out.champion_json, gate_rule=rule)
    moved = None
    if verdict == "promote":
        moved = promote.python_func(registry=uri, model_name="iris", version=out.version, decision=decision,
                                    pipeline_run=f"run-{tag}")
    return {"out": out, "registered": registered, "decision": decision, "verdict": verdict, "moved": moved}


def test_register_gate_promote_as_the_pipeline_runs_them(registry: MlflowRegistry, weak_fit: FitResult,
                                                         good_fit: FitResult, tmp_path: Path) -> None:
    first = _register_gate_promote(registry, weak_fit, tmp_path, "1")
    assert first["out"].version == "1" and first["out"].champion_json == ""  # no champion yet
    assert first["verdict"] == "promote" and first["moved"] == "iris@champion: unset -> 1"
    # The registered copy is the version as the registry stamped it, verified; KServe cannot fetch a
    # local store, so the manifest gets the fallback storage URI.
    card = read_card(Path(first["registered"].path) / "iris")
    assert card.version == "1" and card.lineage["mlflow_run_id"] == first["registered"].metadata["mlflow_run_id"]
    verify_files(Path(first["registered"].path) / "iris", card)
    assert first["out"].storage_uri == "s3://fallback/iris/"

    second = _register_gate_promote(registry, good_fit, tmp_path, "2")
    champion = json.loads(second["out"].champion_json)
    assert champion["version"] == "1" and champion["aliases"] == [CHAMPION]
    assert second["verdict"] == "promote" and second["moved"] == "iris@champion: 1 -> 2"
    report = Path(second["decision"].path).read_text()
    assert report.startswith("# Gate: passed") and "registry iris@champion (version 1)" in report
    assert second["decision"].metadata["champion_version"] == "1"

    third = _register_gate_promote(registry, weak_fit, tmp_path, "3")
    assert third["verdict"] == "hold back" and third["moved"] is None
    assert third["decision"].metadata == {**third["decision"].metadata, "passed": False, "champion_version": "2",
                                          "challenger_version": "3"}
    assert Path(third["decision"].path).read_text().startswith("# Gate: failed")
    assert registry.aliases("iris") == {CHAMPION: "2", CHALLENGER: "3"}
    history = registry.history("iris", CHAMPION)
    assert [(h.from_version, h.to_version) for h in history] == [(None, "1"), ("1", "2")]
    assert history[-1].reason.endswith("pipeline run run-2") and "passed the gate" in history[-1].reason


def test_promote_refuses_when_the_champion_moved_after_the_gate(registry: MlflowRegistry, weak_fit: FitResult,
                                                                good_fit: FitResult, tmp_path: Path) -> None:
    _register_gate_promote(registry, weak_fit, tmp_path, "1")  # v1 champion
    uri = registry.settings.uri
    registered = _artifact(dsl.Model, tmp_path, "registered")
    out = register.python_func(packaged_model=_packaged(good_fit, tmp_path, "p2"), registry=uri, model_name="iris",
                               registered_model=registered)
    decision = _artifact(dsl.Markdown, tmp_path, "decision")
    assert gate_step.python_func(registered_model=registered, model_name="iris", decision=decision,
                                 champion_json=out.champion_json) == "promote"
    registry.register(good_fit.model_dir)  # v3, promoted by someone else meanwhile
    registry.promote("iris", "3", expected="1")
    with pytest.raises(ConflictError, match="iris@champion"):
        promote.python_func(registry=uri, model_name="iris", version=out.version, decision=decision)
    assert registry.aliases("iris")[CHAMPION] == "3"  # nothing overwritten


def test_a_rule_with_a_floor_holds_back_even_the_first_version(registry: MlflowRegistry, weak_fit: FitResult,
                                                              tmp_path: Path) -> None:
    run = _register_gate_promote(registry, weak_fit, tmp_path, "1", rule="default; f1_macro>=0.9")
    assert run["verdict"] == "hold back" and CHAMPION not in registry.aliases("iris")


class _ServedCluster:
    """Stands in for a connected pipeserve.kube.client.Cluster: what it returns for one InferenceService."""

    namespace = "ml"

    def __init__(self, isvc: dict[str, Any]) -> None:
        self.isvc = isvc

    def get_inference_service(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        assert (name, namespace) == ("iris", None)
        return self.isvc


def test_the_champion_as_served_comes_from_the_inference_service(registry: MlflowRegistry, weak_fit: FitResult,
                                                                 good_fit: FitResult) -> None:
    """What is served can differ from the registry's champion: the gate compares with the served one
    but still expects the registry's champion for the compare-and-set."""
    from pipeserve.kube import DeploymentSpec, build_inference_service

    isvc = build_inference_service(good_fit.card, "s3://m/iris/", DeploymentSpec(target="triton-cpu"))
    registry.register(good_fit.model_dir)
    registry.promote("iris", "1")
    weak = registry.register(weak_fit.model_dir)
    cluster = _ServedCluster(isvc)
    served = gate.champion_from_serving(cluster, "iris")  # type: ignore[arg-type]
    assert served.metrics["f1_macro"] == round(good_fit.card.metrics["f1_macro"], 4) and served.decimals == 4
    assert served.source == "InferenceService ml/iris (serving iris version 1)"
    result = gate.gate_registered(registry, "iris", weak.version, serving=(cluster, "iris", None))  # type: ignore[arg-type]
    assert not result.verdict.passed and result.expected_champion == "1"
    assert "InferenceService ml/iris" in result.verdict.to_markdown()


def test_gating_needs_neither_the_registry_nor_the_manifest_builders() -> None:
    """The gate step reads the registry's champion from register's output. The gate, the registry
    and the Kubernetes builders share the annotation prefix and the files digest from the model
    card module, which imports neither the registry nor the builders."""
    from pipeserve.components.embed import library_files
    from pipeserve.components.gating import gate as gate_function
    from pipeserve.components.registration import register as register_function

    assert gate.ANNOTATION_PREFIX is ANNOTATION_PREFIX
    files = {"1/model.onnx": "a" * 64, "config.pbtxt": "b" * 64}
    assert mlflow_registry.files_digest is files_digest and files_digest(files) != files_digest({})
    gate_files = {str(p) for p in library_files(gate_function)}
    assert not any(f.startswith("registry/") for f in gate_files) and "kube/client.py" in gate_files
    assert not any(f.startswith("kube/") for f in map(str, library_files(register_function)))


# -- registry references: serve, manifest ------------------------------------------------------


def test_references_and_paths_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "iris@x").mkdir()
    assert is_model_ref("iris@champion") and is_model_ref("iris/3") and is_model_ref("models:/iris@champion")
    assert not is_model_ref("iris") and not is_model_ref("build/model") and not is_model_ref("s3://b/iris/")
    assert not is_model_ref(tmp_path / "iris@x")  # an existing path wins


def test_resolve_downloads_the_version_an_alias_names(registry: MlflowRegistry, weak_fit: FitResult,
                                                      good_fit: FitResult, tmp_path: Path) -> None:
    registry.register(weak_fit.model_dir)
    registry.register(good_fit.model_dir)
    registry.promote("iris", "2")
    found = resolve("iris@champion", tmp_path / "repo", registry=registry.settings.uri)
    assert found.version.version == "2" and found.card.version == "2" and found.model_dir == tmp_path / "repo" / "iris"
    assert found.storage_uri is None and "local artifact store" in (found.storage_problem or "")
    verify_files(found.model_dir, found.card)
    stored = Path(registry.get("iris/1").source.removeprefix("file://")) / "iris"
    (stored / "1" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="tampered"):
        resolve("iris/1", tmp_path / "other", registry=registry.settings.uri)
    assert not (tmp_path / "other" / "iris").exists()


def test_manifest_of_a_registered_version(registry: MlflowRegistry, good_fit: FitResult, tmp_path: Path) -> None:
    uri = registry.settings.uri
    registry.register(good_fit.model_dir)
    registry.register(good_fit.model_dir)
    registry.promote("iris", "2")
    out = run_cli("manifest", "iris@champion", "--registry", uri, "--storage-uri", "s3://models/iris/",
                  "--target", "triton-cpu")
    assert out.code == 0, out.err
    isvc = yaml.safe_load(out.out)
    annotations = isvc["metadata"]["annotations"]
    assert annotations["pipeserve.dev/model-version"] == "2"
    assert annotations["pipeserve.dev/model-files-sha256"] == registry.get("iris/2").tags["pipeserve.files_sha256"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://models/iris/"
    refused = run_cli("manifest", "iris/2", "--registry", uri)  # a local store: no storage URI a cluster can fetch
    assert refused.code == 2 and "local artifact store" in refused.err and refused.err.count("\n") == 1
    missing = run_cli("manifest", "iris@nope", "--registry", uri, "--storage-uri", "s3://m/")
    assert missing.code == 2 and "no alias 'nope'" in missing.err
    folder = run_cli("manifest", str(good_fit.model_dir))
    assert folder.code == 2 and "--storage-uri is required for a model folder" in folder.err


def test_manifest_takes_the_servers_storage_uri(server_registry: MlflowRegistry, mlflow_server: MlflowServer,
                                                good_fit: FitResult, tmp_path: Path) -> None:
    name = "steps-manifest"
    mv = server_registry.register(renamed(good_fit, name, tmp_path))
    out = run_cli("manifest", f"{name}/{mv.version}", "--registry", mlflow_server.url, "--artifacts-destination",
                  "s3://bucket/mlartifacts")
    assert out.code == 0, out.err
    uri = yaml.safe_load(out.out)["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith("s3://bucket/mlartifacts/") and uri == server_registry.storage_uri(mv.ref)


@pytest.mark.slow
def test_serve_a_registered_version(registry: MlflowRegistry, weak_fit: FitResult, good_fit: FitResult) -> None:
    from pipeserve.client import Predictor
    from pipeserve.localserver import LocalServer

    registry.register(weak_fit.model_dir)
    registry.register(good_fit.model_dir)
    registry.promote("iris", "2")
    with LocalServer.serve("iris@champion", "--registry", registry.settings.uri) as server:
        assert "iris@champion is iris version 2" in server.log()
        with Predictor(server.url, "iris") as client:
            assert client.metadata().versions == ("2",)
            assert client.predict(good_fit.split.X_test[:3]).tolist() == good_fit.split.y_test[:3].tolist()


# -- as a pod runs them ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_registry_steps_run_from_their_archives_against_a_server(mlflow_server: MlflowServer,
                                                                     good_fit: FitResult, tmp_path: Path) -> None:
    """register, gate and promote with only their pins (mlflow-skinny's tree; the gate adds
    kubernetes) and their embedded modules, against a real MLflow server, as in a pod."""
    from podsim import StepRunner

    name = "steps-pod"
    pod = StepRunner(tmp_path / "pod")
    packaged = pod.new("Model", "packaged")
    renamed(good_fit, name, Path(packaged["uri"]))
    out = pod.run("register", {"packaged_model": packaged, "registry": mlflow_server.url, "model_name": name,
                               "registered_model": pod.new("Model", "registered"),
                               "registry_artifacts": "s3://bucket/mlartifacts"})
    version, storage_uri, champion_json = out
    assert storage_uri.startswith("s3://bucket/mlartifacts/") and champion_json == ""
    verdict = pod.run("gate", {"registered_model": pod.artifacts["registered"], "model_name": name,
                               "decision": pod.new("Markdown", "decision"), "champion_json": champion_json})
    assert verdict == "promote"
    moved = pod.run("promote", {"registry": mlflow_server.url, "model_name": name, "version": version,
                                "decision": pod.artifacts["decision"]})
    assert moved == f"{name}@champion: unset -> {version}"
