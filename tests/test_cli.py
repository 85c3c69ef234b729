"""The `pipeserve` command line: help everywhere, one-line errors with exit code 2, run and compile.

In-process (tests/helpers.py ``run_cli``) except where a real process matters: the installed
script itself, and a whole run (kfp.local's subprocesses, the exit code a shell sees).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, spawn_cli

from pipeserve.cli.main import COMMANDS


def test_the_installed_script_runs():
    result = subprocess.run([str(Path(sys.executable).parent / "pipeserve"), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "usage: pipeserve" in result.stdout


def test_top_level_help_lists_every_command():
    result = run_cli("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert command in result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.code == 0, result.err
    assert f"usage: pipeserve {command}" in result.out


def test_no_command_prints_help_and_fails():
    result = run_cli()
    assert result.code == 2 and "usage: pipeserve" in result.out


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


BAD_RUNS = [
    (["--dataset", "nope"], "is not a built-in dataset"),
    (["--dataset", "/no/such/file.csv", "--target", "y"], "does not exist"),
    (["--estimator", "svm"], "Unknown estimator 'svm' for classification; choose one of: logistic_regression"),
    (["--param", "Cee=1"], "Unknown hyperparameter(s) Cee"),
    (["--param", "C=-1"], "'C' parameter of LogisticRegression must be"),
    (["--param", "C"], "NAME=VALUE"),
    (["--dataset", "diabetes", "--estimator", "logistic_regression"], "choose one of: ridge"),
    (["--dataset", "iris", "--target", "species"], "has target column 'target'"),
    (["--model-name", "Bad Name"], "Model name 'Bad Name' is not valid"),
    (["--model-version", "v1"], "positive integer"),
    (["--min-replicas", "5", "--max-replicas", "2"], "greater than max_replicas"),
    (["--test-size", "2"], "test_size must be between 0 and 1"),
    (["--serving-target", "sagemaker"], "invalid choice: 'sagemaker'"),
    (["--cpu", "--serving-target", "pipeserve"], "not allowed with argument"),
    (["--grid", "C"], "A grid is given as NAME=V1,V2"),
    (["--grid", "C=0.1,-1"], "'C' parameter of LogisticRegression must be"),  # every candidate is checked
    (["--grid", "Cee=1,2"], "Unknown hyperparameter(s) Cee"),
    (["--grid", "C=0.1,1", "-p", "C=2"], "C is both fixed (-p / params_json) and searched"),
    (["--grid", "C=0.1,1", "--grid", "C=3"], "given twice"),
    (["--grid", "C=0.1,1", "--cv-folds", "1"], "--cv-folds must be at least 2"),
    (["--gate", "f1_macro>=0.9"], "they need --registry"),
    (["--serving-name", "iris"], "they need --registry"),
    (["--registry", "file:///tmp/x", "--gate", "default"], "MLflow's file store"),
]


@pytest.mark.parametrize(("args", "message"), BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_run_input_fails_in_one_line(tmp_path, args, message):
    result = run_cli("run", "--output", str(tmp_path / "out"), *args)
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "out").exists()  # nothing written before the input is known to be good


@pytest.mark.parametrize(("content", "target", "message"), [
    ("a,b,y\n1,x,0\n2,y,1\n3,z,0\n4,w,1\n", "y", "Feature columns must be numeric; these are not: b"),
    ("a,y\n1,0\n2,1\n3,0\n4,1\n", "label", "Target column 'label' not found"),
    ("a,y\n1,0\n,1\n3,0\n4,1\n", "y", "missing values: a"),
])
def test_bad_files_fail_in_one_line(tmp_path, content, target, message):
    result = run_cli("run", "--dataset", _csv(tmp_path, content), "--target", target, "--output", str(tmp_path / "o"))
    assert result.code == 2
    assert result.err.count("\n") == 1 and message in result.err


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    result = run_cli("run", "--dataset", str(bad), "--target", "y", cwd=tmp_path)
    assert result.code == 2 and result.err.startswith("pipeserve run: error: Cannot read")
    assert result.err.count("\n") == 1


@pytest.mark.slow
def test_compile_writes_parseable_yaml(tmp_path):
    result = run_cli("compile", "--output", str(tmp_path / "p.yaml"), "--kubernetes-manifest", str(tmp_path / "k.yaml"),
                     "--components-dir", str(tmp_path / "components"))
    assert result.code == 0, result.err
    spec, platform = yaml.safe_load_all((tmp_path / "p.yaml").read_text())  # pipeline spec, kfp-kubernetes
    assert spec["pipelineInfo"]["name"] == "train-and-serve" and "kubernetes" in platform["platforms"]
    assert len(list(yaml.safe_load_all((tmp_path / "k.yaml").read_text()))) == 2
    assert len(list((tmp_path / "components").glob("*.yaml"))) == 12


def test_compile_for_a_prebuilt_image(tmp_path):
    result = run_cli("compile", "--output", str(tmp_path / "p.yaml"), "--image", "registry.example/pipeserve:0.1.0")
    assert result.code == 0, result.err
    spec, _ = yaml.safe_load_all((tmp_path / "p.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/pipeserve:0.1.0"}
    assert "pip install" not in (tmp_path / "p.yaml").read_text()


def test_compile_refuses_a_bad_image_in_one_line(tmp_path):
    result = run_cli("compile", "--output", str(tmp_path / "p.yaml"), "--image", "not an image")
    assert result.code == 2 and result.err.count("\n") == 1 and "not a container image reference" in result.err
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.slow
def test_run_end_to_end_from_a_csv(tmp_path):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame.to_csv(tmp_path / "wine.csv", index=False)
    result = spawn_cli("run", "--dataset", str(tmp_path / "wine.csv"), "--target", "cultivar", "--estimator",
                       "random_forest", "-p", "n_estimators=20", "--cpu", "--output", str(tmp_path / "build"),
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Model wine v1: random_forest (classification)" in result.stdout
    assert "build/inferenceservice.yaml" in result.stdout and "pipeserve serve build/model" in result.stdout
    for step in ("load-data", "train", "evaluate", "package", "emit-inference-service"):
        assert f"{step}" in result.stderr  # progress lines
        assert f"{step} " in result.stdout.split("  steps", 1)[1].split("\n", 1)[0]  # its time in the summary
    assert (tmp_path / "build" / "model" / "wine" / "1" / "model.onnx").is_file()
    isvc = yaml.safe_load((tmp_path / "build" / "inferenceservice.yaml").read_text())
    assert isvc["metadata"]["name"] == "wine"
    assert "nvidia.com/gpu" not in str(isvc)


def test_a_bad_gate_rule_fails_before_the_registry_is_touched(tmp_path):
    result = run_cli("run", "--registry", str(tmp_path / "reg"), "--gate", "log_loss>=champion",
                     "--output", str(tmp_path / "out"))
    assert result.code == 2 and result.err.count("\n") == 1
    assert "did you mean log_loss<=champion" in result.err
    assert not (tmp_path / "reg").exists() and not (tmp_path / "out").exists()


def test_an_unreachable_registry_fails_before_training(tmp_path, monkeypatch):
    # The configured retries still run, without the backoff sleeps between them.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    from pipeserve.localserver import free_port

    result = run_cli("run", "--registry", f"http://127.0.0.1:{free_port()}", "--output", str(tmp_path / "out"))
    assert result.code == 1 and result.err.count("\n") == 1 and "is unreachable" in result.err
    assert not (tmp_path / "out").exists()


def test_run_help_documents_the_lifecycle_options():
    out = run_cli("run", "--help").out
    for option in ("--grid", "--cv-folds", "--registry", "--gate", "--serving-name", "--artifacts-destination"):
        assert option in out
