"""Each KFP component's Python function, called directly with real artifacts in tmp_path, and
each step's compiled code run the way a pod runs it (pipeserve from load_data's library artifact
alone, its pinned packages only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from pipeserve.components import (
    emit_inference_service,
    evaluate,
    load_data,
    package,
    plan_grid,
    score_candidate,
    select_candidate,
    train,
)
from pipeserve.errors import ConfigError
from pipeserve.modelcard import read_card, verify_files


def _artifact(cls, tmp_path: Path, name: str):
    artifact = cls(name=name, uri=str(tmp_path / name), metadata={})
    return artifact


@pytest.fixture()
def steps(tmp_path, monkeypatch):
    """Run load_data → train → evaluate → package through .python_func; return the artifacts.

    In this process pipeserve is installed (and imported): load_data hands a copy of it on, and
    puts it on a sys.path that is put back afterwards."""
    monkeypatch.setattr(sys, "path", sys.path[:])
    train_data, test_data = _artifact(dsl.Dataset, tmp_path, "train"), _artifact(dsl.Dataset, tmp_path, "test")
    library = _artifact(dsl.Artifact, tmp_path, "library")
    info = load_data.python_func(source="iris", train_data=train_data, test_data=test_data, library=library)
    model = _artifact(dsl.Model, tmp_path, "model")
    train.python_func(train_data=train_data, model=model, estimator="", params_json='{"C": 0.5}')
    metrics = _artifact(dsl.Metrics, tmp_path, "metrics")
    cls_metrics = _artifact(dsl.ClassificationMetrics, tmp_path, "cls")
    card_md = _artifact(dsl.Markdown, tmp_path, "card.md")
    metrics_json = evaluate.python_func(model=model, train_data=train_data, test_data=test_data, metrics=metrics,
                                        classification_metrics=cls_metrics, model_card=card_md, model_name="iris")
    packaged = _artifact(dsl.Model, tmp_path, "packaged")
    package.python_func(model=model, train_data=train_data, test_data=test_data, metrics_json=metrics_json,
                        model_name="iris", packaged_model=packaged, pipeline_run="run-123",
                        source_revision="abc123")
    return dict(info=info, train_data=train_data, test_data=test_data, model=model, metrics=metrics,
                cls_metrics=cls_metrics, card_md=card_md, metrics_json=metrics_json, packaged=packaged,
                library=library)


def test_load_data(steps):
    info = steps["info"]
    assert (info.task, info.target, info.rows) == ("classification", "target", 150)
    assert info.fingerprint.startswith("sha256:")
    assert steps["train_data"].metadata["rows"] == 120 and steps["test_data"].metadata["rows"] == 30
    assert steps["train_data"].metadata["lineage"]["fingerprint"] == info.fingerprint


def test_load_data_hands_the_installed_library_on(steps):
    """Where pipeserve is installed (kfp.local, --image), the library artifact is a copy of it."""
    import pipeserve

    library = steps["library"]
    copy = Path(library.path) / "pipeserve"
    installed = Path(pipeserve.__file__).parent
    assert (copy / "__init__.py").read_bytes() == (installed / "__init__.py").read_bytes()
    assert (copy / "components" / "data.py").is_file() and (copy / "kube" / "schemas").is_dir()
    assert not list(copy.rglob("__pycache__"))  # the sources: each process compiles (or caches) its own
    assert library.metadata["version"] == pipeserve.__version__ and library.metadata["files"] > 50


def test_train(steps):
    meta = steps["model"].metadata
    assert meta["framework"] == "sklearn" and meta["format"] == "skops"
    assert meta["name"] == "logistic_regression" and meta["params"]["C"] == 0.5


def test_evaluate_logs_what_the_kfp_ui_draws(steps):
    metrics = json.loads(steps["metrics_json"])
    assert steps["metrics"].metadata == metrics
    assert set(metrics) == {"accuracy", "f1_macro", "roc_auc", "log_loss"}
    cm = steps["cls_metrics"].metadata["confusionMatrix"]
    assert [a["displayName"] for a in cm["annotationSpecs"]] == ["0", "1", "2"]
    assert sum(sum(row["row"]) for row in cm["rows"]) == 30
    roc = steps["cls_metrics"].metadata["confidenceMetrics"]
    assert roc and {"falsePositiveRate", "recall", "confidenceThreshold"} <= set(roc[0])
    assert Path(steps["card_md"].path).read_text().startswith("# Model card: iris")


def test_package_writes_a_verified_repository(steps):
    packaged = steps["packaged"]
    card = read_card(Path(packaged.path) / "iris")
    verify_files(Path(packaged.path) / "iris", card)
    assert card.lineage == {"pipeline_run_id": "run-123", "source_revision": "abc123"}
    assert card.estimator["params"]["C"] == 0.5
    assert card.metrics == json.loads(steps["metrics_json"])
    assert packaged.metadata["model_name"] == "iris" and len(packaged.metadata["onnx_sha256"]) == 64


@pytest.mark.parametrize("storage_uri", ["", "s3://models/iris/"])
def test_emit_writes_a_valid_inference_service(steps, tmp_path, storage_uri):
    from pipeserve.kube.schema import validate

    packaged = steps["packaged"]
    manifest = _artifact(dsl.Artifact, tmp_path, "isvc.yaml")
    got = emit_inference_service.python_func(packaged_model=packaged, model_name="iris", manifest=manifest,
                                             target="triton-cpu", namespace="models", min_replicas=1,
                                             max_replicas=2, storage_uri=storage_uri)
    expected = storage_uri or Path(packaged.path).as_uri()
    assert got == expected
    doc = yaml.safe_load(Path(manifest.path).read_text())
    assert doc["spec"]["predictor"]["model"]["storageUri"] == expected
    assert doc["metadata"]["namespace"] == "models"
    assert doc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    assert validate(doc) == []
    assert manifest.metadata["storageUri"] == expected


@pytest.mark.parametrize(("uri", "expected"), [
    ("minio://mlpipeline/v2/artifacts/p/run/package/packaged_model", "s3://mlpipeline/v2/artifacts/p/run/package/packaged_model"),
    ("gs://bucket/x", "gs://bucket/x"),
    ("s3://bucket/x", "s3://bucket/x"),
    ("/tmp/kfp/run/packaged_model", "file:///tmp/kfp/run/packaged_model"),
])
def test_storage_uri_for_kfp_artifacts(uri, expected):
    from pipeserve.storage import storage_uri_for

    assert storage_uri_for(uri) == expected


@pytest.mark.slow
def test_components_are_built_on_first_use_and_leave_no_temporary_folder(tmp_path):
    code = ("import os, pipeserve.components, pipeserve.pipelines.train_and_serve as p; "
            "assert os.listdir(os.environ['TMPDIR']) == [], 'import'; "
            "pipeserve.components.train; p.train_and_serve; "
            "assert os.listdir(os.environ['TMPDIR']) == [], 'build'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TMPDIR": str(tmp_path)})


# -- the hyperparameter fan-out: plan, score (training split only), select ----------------------


def test_plan_grid_expands_the_grid_with_the_fixed_params():
    candidates = [json.loads(c) for c in plan_grid.python_func(param_grid_json='{"C": [0.1, 1], "tol": [0.001]}',
                                                               params_json='{"max_iter": 50}')]
    assert candidates == [{"index": 0, "params": {"C": 0.1, "max_iter": 50, "tol": 0.001}},
                          {"index": 1, "params": {"C": 1, "max_iter": 50, "tol": 0.001}}]
    with pytest.raises(ConfigError, match="both fixed"):
        plan_grid.python_func(param_grid_json='{"C": [1]}', params_json='{"C": 2}')


def test_a_candidate_is_scored_on_the_training_split_alone(steps, tmp_path):
    """The scoring step is given the training table only: with the test table gone it scores the
    same, and exactly as cross-validation on the training rows does."""
    from pipeserve import data, tuning

    Path(steps["test_data"].path).unlink()  # nothing could read it now
    metrics = _artifact(dsl.Metrics, tmp_path, "cv")
    out = score_candidate.python_func(train_data=steps["train_data"], candidate='{"index": 1, "params": {"C": 0.5}}',
                                      cv_metrics=metrics, cv_folds=4, random_state=3)
    got = tuning.CVScore.from_json(out)
    X, y, _ = data.read_split_frame(steps["train_data"].path, "target")
    assert got == tuning.cross_validate("classification", "logistic_regression", {"C": 0.5}, X, y, folds=4,
                                        random_state=3, index=1)
    assert json.loads(out)["estimator"] == "logistic_regression" and len(got.folds) == 4
    assert metrics.metadata["cv_f1_macro_mean"] == got.mean and metrics.metadata["candidate"] == "C=0.5"


def test_select_candidate_picks_the_best_and_shows_every_score(tmp_path):
    from pipeserve import tuning

    scores = [tuning.CVScore(i, {"C": c}, "f1_macro", m, 0.01, (m,)).to_json()
              for i, (c, m) in enumerate([(0.01, 0.87), (1, 0.96), (10, 0.96)])]
    search, table = _artifact(dsl.Markdown, tmp_path, "search.md"), _artifact(dsl.Metrics, tmp_path, "scores")
    chosen = select_candidate.python_func(scores=scores, search=search, candidate_scores=table,
                                          param_grid_json='{"C": [0.01, 1, 10]}')
    assert json.loads(chosen) == {"C": 1}  # the tie goes to the earlier candidate
    assert table.metadata["#0 C=0.01"] == 0.87 and table.metadata["chosen"] == 1
    assert "`C=1` **(chosen)**" in Path(search.path).read_text()


# -- the library: load_data carries it, every other step imports it from load_data's artifact -----


def test_every_step_but_load_data_starts_by_putting_the_library_first():
    """The one line a function component can import an artifact's code with, the same in every step."""
    import ast
    import inspect
    import textwrap

    from kfp.dsl import Artifact, Input

    from pipeserve.components.runtime import _FUNCTIONS, LIBRARY_STEP

    line = '__import__("sys").path[:0] = [library.path] if library else []'
    for name, func in _FUNCTIONS.items():
        parameter = inspect.signature(func).parameters["library"]
        if name == LIBRARY_STEP:
            assert parameter.annotation == dsl.Output[Artifact] and parameter.default is inspect.Parameter.empty
            continue
        assert parameter.annotation == Input[Artifact] and parameter.default is None, name
        source = textwrap.dedent(inspect.getsource(func))
        (definition,) = ast.parse(source).body
        assert ast.get_docstring(definition) and ast.get_source_segment(source, definition.body[1]) == line, name


def test_executors_keep_the_description_and_leave_the_args_to_the_inputs():
    from pipeserve.components.runtime import executor_source

    program = ('import kfp\n\ndef step(x: int):\n    """Do it.\n\n    More.\n\n    Args:\n        x: A number.\n'
               '    """\n    return x\n')
    assert executor_source(program, "step") == 'import kfp\n\ndef step(x: int):\n    """Do it.\n\n    More."""\n' \
                                               "    return x\n"
    assert executor_source("def step():\n    return 1\n", "step") == "def step():\n    return 1\n"


# -- a step as a pod runs it --------------------------------------------------------------------


@pytest.mark.slow
def test_each_step_runs_from_the_library_artifact_with_only_its_pinned_packages(tmp_path):
    """Like a pod on the stock image, minus pip (tests/podsim.py): load_data unpacks the library it
    carries into its artifact, and each later step imports pipeserve from that artifact alone (the
    fan-out too). The registry steps run the same way against a real MLflow server in
    tests/registry/test_pipeline_steps.py; the deploy step, which needs a cluster, runs here until it
    asks for one, and every module it can import imports."""
    from podsim import StepRunner

    from pipeserve.components.deployment import deploy as deploy_function
    from pipeserve.components.embed import library_files
    from pipeserve.components.runtime import _FUNCTIONS, NOT_EMBEDDED

    pod = StepRunner(tmp_path)
    new = pod.new
    pod.run("load_data", {"source": "iris", "train_data": new("Dataset", "train"), "test_data": new("Dataset", "test")})
    library = Path(pod.artifacts["library"]["uri"])
    assert sorted(p.relative_to(library / "pipeserve") for p in library.rglob("*.py")) == library_files(
        *_FUNCTIONS.values(), unused=NOT_EMBEDDED)
    train, test = pod.artifacts["train"], pod.artifacts["test"]
    candidates = pod.run("plan_grid", {"param_grid_json": '{"C": [0.01, 1]}', "params_json": "{}"})
    scores = [pod.run("score_candidate", {"train_data": train, "candidate": c, "cv_metrics": new("Metrics", f"cv{i}")},
                      label=f"score_{i}") for i, c in enumerate(candidates)]
    chosen = pod.run("select_candidate", {"scores": scores, "search": new("Markdown", "search"),
                                          "candidate_scores": new("Metrics", "scores"),
                                          "param_grid_json": '{"C": [0.01, 1]}'})
    assert json.loads(chosen) == {"C": 1}
    pod.run("train", {"train_data": train, "model": new("Model", "model"), "params_json": chosen})
    metrics_json = pod.run("evaluate", {"model": pod.artifacts["model"], "train_data": train, "test_data": test,
                                        "metrics": new("Metrics", "metrics"),
                                        "classification_metrics": new("ClassificationMetrics", "cls"),
                                        "model_card": new("Markdown", "card")})
    pod.run("package", {"model": pod.artifacts["model"], "train_data": train, "test_data": test,
                        "metrics_json": metrics_json, "model_name": "iris", "packaged_model": new("Model", "packaged")})
    pod.run("emit_inference_service", {"packaged_model": pod.artifacts["packaged"], "model_name": "iris",
                                       "manifest": new("Artifact", "isvc.yaml"), "target": "triton-cpu"})
    isvc = yaml.safe_load(Path(pod.artifacts["isvc.yaml"]["uri"]).read_text())
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == "onnx"
    assert json.loads(metrics_json)["accuracy"] > 0.9
    # deploy, with and without a registry: imported, running, and refused for want of a cluster.
    for registry in ("", "http://127.0.0.1:9/"):
        pod.run("deploy", {"packaged_model": pod.artifacts["packaged"], "model_name": "iris", "registry": registry,
                           "version": "1", "report": new("Markdown", f"deploy{registry[:4]}")},
                label=f"deploy{registry[:4]}", error="No Kubernetes cluster configured")
    modules = sorted({"pipeserve." + ".".join(p.with_suffix("").parts).removesuffix(".__init__")
                      for p in library_files(deploy_function, unused=NOT_EMBEDDED) if p.suffix == ".py"})
    assert "pipeserve.rollout" in modules and "pipeserve.kube.render" in modules
    pod.imports("deploy", modules)
