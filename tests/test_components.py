"""Each KFP component's Python function, called directly with real artifacts in tmp_path, and
each step's compiled code run the way a pod runs it (its embedded archive, its pinned packages only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from pipeserve.components import emit_inference_service, evaluate, load_data, package, train
from pipeserve.modelcard import read_card, verify_files


def _artifact(cls, tmp_path: Path, name: str):
    artifact = cls(name=name, uri=str(tmp_path / name), metadata={})
    return artifact


@pytest.fixture()
def steps(tmp_path):
    """Run load_data → train → evaluate → package through .python_func; return the artifacts."""
    train_data, test_data = _artifact(dsl.Dataset, tmp_path, "train"), _artifact(dsl.Dataset, tmp_path, "test")
    info = load_data.python_func(source="iris", train_data=train_data, test_data=test_data)
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
                cls_metrics=cls_metrics, card_md=card_md, metrics_json=metrics_json, packaged=packaged)


def test_load_data(steps):
    info = steps["info"]
    assert (info.task, info.target, info.rows) == ("classification", "target", 150)
    assert info.fingerprint.startswith("sha256:")
    assert steps["train_data"].metadata["rows"] == 120 and steps["test_data"].metadata["rows"] == 30
    assert steps["train_data"].metadata["lineage"]["fingerprint"] == info.fingerprint


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


def test_components_are_built_on_first_use_and_leave_no_temporary_folder(tmp_path):
    code = ("import os, pipeserve.components, pipeserve.pipelines.train_and_serve as p; "
            "assert os.listdir(os.environ['TMPDIR']) == [], 'import'; "
            "pipeserve.components.train; p.train_and_serve; "
            "assert os.listdir(os.environ['TMPDIR']) == [], 'build'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TMPDIR": str(tmp_path)})


# -- a step as a pod runs it --------------------------------------------------------------------

_STEP_RUNNER = """
import importlib.util, json, sys
config = json.load(open(sys.argv[1]))
spec = importlib.util.spec_from_file_location("ephemeral_component", config["source"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # KFP's helper unpacks the embedded archive onto sys.path
import pipeserve
assert pipeserve.__file__.startswith(module.__KFP_EMBEDDED_ASSET_DIR), pipeserve.__file__
from kfp import dsl
args = {k: getattr(dsl, v["type"])(name=k, uri=v["uri"], metadata=v["metadata"]) if isinstance(v, dict) else v
        for k, v in config["args"].items()}
result = getattr(module, config["function"])(**args)
json.dump({"result": list(result) if isinstance(result, tuple) else result,
           "metadata": {k: a.metadata for k, a in args.items() if not isinstance(config["args"][k], str)},
           "modules": sorted({m.split(".")[0] for m in sys.modules})}, open(config["out"], "w"))
"""


def _site_with_only(requirements: list[str], root: Path) -> Path:
    """A site-packages folder holding only the pinned distributions (links into this venv's)."""
    import importlib.metadata

    site = root / "site"
    site.mkdir()
    for pin in requirements:
        if pin.startswith("--"):
            continue
        dist = importlib.metadata.distribution(pin.split("==")[0])
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not (site / top).exists():
                (site / top).symlink_to(Path(dist.locate_file(top)))
    return site


@pytest.mark.slow
def test_each_step_runs_from_its_archive_with_only_its_pinned_packages(tmp_path):
    """Like a pod on the stock image, minus pip: pipeserve exists only in the step's embedded
    archive, and only the distributions the step pins are importable. A module missing from the
    archive, or a package missing from the pins, fails here as it would on the cluster."""
    from pipeserve.components import build_components
    from pipeserve.components.runtime import step_packages

    stock = build_components()
    plan = [
        ("load_data", {"source": "iris", "train_data": ("Dataset", "train"), "test_data": ("Dataset", "test")}),
        ("train", {"train_data": "train", "model": ("Model", "model"), "params_json": '{"C": 0.5}'}),
        ("evaluate", {"model": "model", "train_data": "train", "test_data": "test", "metrics": ("Metrics", "metrics"),
                      "classification_metrics": ("ClassificationMetrics", "cls"), "model_card": ("Markdown", "card")}),
        ("package", {"model": "model", "train_data": "train", "test_data": "test", "metrics_json": "<evaluate>",
                     "model_name": "iris", "packaged_model": ("Model", "packaged")}),
        ("emit_inference_service", {"packaged_model": "packaged", "model_name": "iris",
                                    "manifest": ("Artifact", "isvc.yaml"), "target": "triton-cpu"}),
    ]
    artifacts: dict[str, dict] = {}
    results: dict[str, object] = {}
    env = {"PATH": os.environ["PATH"], "_KFP_RUNTIME": "true", "HOME": str(tmp_path)}
    for step, spec in plan:
        work = tmp_path / step
        work.mkdir()
        args: dict[str, object] = {}
        for key, value in spec.items():
            if isinstance(value, tuple):  # a new output artifact
                artifacts[value[1]] = {"type": value[0], "uri": str(tmp_path / "artifacts" / value[1]), "metadata": {}}
                args[key] = artifacts[value[1]]
            elif value in artifacts:  # an upstream artifact
                args[key] = artifacts[value]
            else:
                args[key] = results["evaluate"] if value == "<evaluate>" else value
        (tmp_path / "artifacts").mkdir(exist_ok=True)
        source = work / "ephemeral_component.py"
        source.write_text(getattr(stock, step).component_spec.implementation.container.command[-1])
        config = work / "config.json"
        config.write_text(json.dumps({"source": str(source), "function": step, "args": args,
                                      "out": str(work / "out.json")}))
        site = _site_with_only(step_packages(step), work)
        # -S: no site-packages (and so no editable pipeserve); only the step's pins are importable.
        proc = subprocess.run([sys.executable, "-S", "-c", _STEP_RUNNER, str(config)], capture_output=True, text=True,
                              env={**env, "PYTHONPATH": str(site)}, cwd=work, timeout=300)
        assert proc.returncode == 0, f"{step}:\n{proc.stderr[-3000:]}"
        out = json.loads((work / "out.json").read_text())
        results[step] = out["result"]
        for key, metadata in out["metadata"].items():
            args[key]["metadata"] = metadata  # type: ignore[index]
    isvc = yaml.safe_load(Path(artifacts["isvc.yaml"]["uri"]).read_text())
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == "onnx"
    assert json.loads(results["evaluate"])["accuracy"] > 0.9
