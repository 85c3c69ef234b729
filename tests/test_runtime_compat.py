"""Every model the catalogue packages loads in KServe 0.21's Triton (ONNX Runtime 1.15.0) and agrees
with scikit-learn there; a model stamped for a newer runtime is refused for it.

ONNX Runtime 1.15.0 runs in its own venv (`make test` makes .tools/onnxruntime-1.15.0 from
tests/compat/onnxruntime-1.15.0.txt); tests/compat/ort_predict.py runs the models in it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine

from pipeserve import packaging, runtimes
from pipeserve.cli.main import main
from pipeserve.kube import DeploymentSpec, build_inference_service
from pipeserve.modelcard import read_card
from pipeserve.workflow import FitResult, fit_and_package

ROOT = Path(__file__).resolve().parents[1]
ORT_VENV = ROOT / ".tools" / "onnxruntime-1.15.0"
ORT_PYTHON = ORT_VENV / "bin" / "python"

# (dataset, estimator): every catalogue estimator, binary and multiclass, built-in and CSV (string
# labels), classification and regression.
CASES = [
    ("iris", "logistic_regression"), ("iris", "random_forest"), ("iris", "hist_gradient_boosting"),
    ("breast_cancer", "logistic_regression"), ("breast_cancer", "random_forest"),
    ("breast_cancer", "hist_gradient_boosting"), ("wine", "logistic_regression"), ("digits", "logistic_regression"),
    ("wine.csv", "logistic_regression"), ("wine.csv", "random_forest"), ("wine.csv", "hist_gradient_boosting"),
    ("diabetes", "ridge"), ("diabetes", "random_forest"), ("diabetes", "hist_gradient_boosting"),
    ("diabetes.csv", "ridge"), ("diabetes.csv", "random_forest"), ("diabetes.csv", "hist_gradient_boosting"),
]


@dataclass
class Ran:
    fit: FitResult
    outputs: dict[str, np.ndarray] | None
    error: str | None


def _csv(folder: Path, name: str) -> tuple[str, str]:
    if name == "wine.csv":  # string class labels: the ONNX label output is a string tensor
        X, y = load_wine(return_X_y=True, as_frame=True)
        frame = X.assign(cultivar=y.map({0: "barolo", 1: "grignolino", 2: "barbera"}))
        target = "cultivar"
    else:
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        frame, target = X.assign(progression=y), "progression"
    path = folder / name
    frame.to_csv(path, index=False)
    return str(path), target


@pytest.fixture(scope="module")
def ort_python() -> Path:
    if not ORT_PYTHON.is_file():
        pytest.fail(
            f"{ORT_PYTHON} is missing: `make test` creates it (or run `make {ORT_VENV.relative_to(ROOT)}/.installed`).",
            pytrace=False,
        )
    return ORT_PYTHON


def _run_in_old_runtime(ort_python: Path, models: dict[str, tuple[Path, np.ndarray]], work: Path) -> dict:
    jobs = []
    for key, (onnx_path, X) in models.items():
        np.save(work / f"{key}.npy", np.ascontiguousarray(X, dtype=np.float32))
        jobs.append({"id": key, "onnx": str(onnx_path), "inputs": str(work / f"{key}.npy")})
    (work / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([str(ort_python), str(ROOT / "tests/compat/ort_predict.py"), str(work / "jobs.json"),
                           str(work)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.15.0"  # really the old runtime
    results = {}
    for key in models:
        error = work / f"{key}.error"
        results[key] = (None, error.read_text()) if error.exists() else (dict(np.load(work / f"{key}.npz")), None)
    return results


@pytest.fixture(scope="module")
def catalogue_in_old_runtime(tmp_path_factory, ort_python) -> dict[str, Ran]:
    work = tmp_path_factory.mktemp("ort115")
    fits = {}
    for dataset, estimator in CASES:
        source, target = _csv(work, dataset) if dataset.endswith(".csv") else (dataset, None)
        name = f"{dataset.replace('.', '-').replace('_', '-')}-{estimator.replace('_', '-')}"
        fits[name] = fit_and_package(source, work / "repo", target=target, estimator=estimator, name=name)
    ran = _run_in_old_runtime(ort_python, {k: (f.model_dir / "1/model.onnx", f.split.X_test) for k, f in fits.items()},
                              work)
    return {k: Ran(fits[k], *ran[k]) for k in fits}


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "estimator"), CASES)
def test_every_catalogue_model_loads_and_agrees_in_onnxruntime_1_15(catalogue_in_old_runtime, dataset, estimator):
    name = f"{dataset.replace('.', '-').replace('_', '-')}-{estimator.replace('_', '-')}"
    ran = catalogue_in_old_runtime[name]
    assert ran.error is None, f"ONNX Runtime 1.15.0 refused {name}: {ran.error}"
    card, model, X = ran.fit.card, ran.fit.model, ran.fit.split.X_test
    # The card says what the file needs, and 1.15 (Triton 23.05) is within it.
    assert card.onnx["packaged_for"] == "kserve-tritonserver:23.05-py3"
    assert card.onnx["ir_version"] <= 9 and card.onnx["opsets"]["ai.onnx"] <= 18
    assert card.onnx["opsets"].get("ai.onnx.ml", 0) <= 3
    assert card.onnx["min_onnxruntime"] in ("1.14", "1.15")
    if card.task == "classification":
        labels, proba = ran.outputs["label"], ran.outputs["probabilities"]
        expected = model.predict(X)
        assert labels.astype(str).tolist() == expected.astype(str).tolist()
        np.testing.assert_allclose(proba, model.predict_proba(X), atol=packaging.PROBA_ATOL, rtol=0)
    else:
        np.testing.assert_allclose(ran.outputs["prediction"], model.predict(X),
                                   rtol=packaging.REGRESSION_RTOL, atol=packaging.REGRESSION_ATOL)


def test_a_model_for_a_newer_runtime_is_refused_for_triton_23_05(tmp_path, ort_python, capsys):
    # Packaged for our own runtime (ONNX Runtime 1.32): skl2onnx's newest opset, IR 10.
    fit = fit_and_package("iris", tmp_path / "repo", name="iris", serving_target="pipeserve")
    card = read_card(fit.model_dir)
    assert card.onnx["packaged_for"] == "pipeserve-runtime:0.1.0"
    assert card.onnx["ir_version"] >= 10 and card.onnx["opsets"]["ai.onnx"] >= 21
    # The premise: ONNX Runtime 1.15.0 really cannot load it ...
    ((_, error),) = _run_in_old_runtime(ort_python, {"new": (fit.model_dir / "1/model.onnx", fit.split.X_test)},
                                        tmp_path).values()
    assert "Unsupported model IR version: 10, max supported IR version: 9" in error
    # ... so rendering it for the default Triton fails in one line naming both versions and the fix.
    with pytest.raises(runtimes.RuntimeIncompatible) as info:
        build_inference_service(card, "s3://models/iris/", DeploymentSpec(target="triton-cpu"))
    message = str(info.value)
    assert "\n" not in message
    for part in (f"IR {card.onnx['ir_version']}", "kserve-tritonserver:23.05-py3", "ONNX Runtime 1.15.0",
                 "--runtime-version 23.05-py3"):
        assert part in message
    # The CLI says the same in one line, exit 2 (bad input), and writes nothing.
    out = tmp_path / "isvc.yaml"
    code = main(["manifest", str(fit.model_dir), "--storage-uri", "s3://m/", "--target", "triton-gpu", "-o", str(out)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "ONNX Runtime 1.15.0" in err and not out.exists()
    # The runtime it was packaged for, and a Triton new enough, take it.
    build_inference_service(card, "s3://models/iris/", DeploymentSpec(target="pipeserve"))
    build_inference_service(card, "s3://models/iris/", DeploymentSpec(target="triton-cpu", runtime_version="25.03-py3"))


def test_runtime_version_moves_the_target():
    assert runtimes.onnx_target().converter_opsets() == {"": 18, "ai.onnx.ml": 3}
    assert runtimes.onnx_target(runtimes.TRITON, "24.08-py3").converter_opsets() == {"": 21, "ai.onnx.ml": 4}
    assert runtimes.onnx_target(runtimes.TRITON, "25.03-py3").onnxruntime == "1.21.0"
    # sklearnserver loads no ONNX: the repository's ONNX file stays servable by stock Triton.
    assert runtimes.onnx_target(runtimes.SKLEARNSERVER).label == "kserve-tritonserver:23.05-py3"
    with pytest.raises(runtimes.ConfigError, match="Unknown kserve-tritonserver image tag '22.01-py3'"):
        runtimes.onnx_target(runtimes.TRITON, "22.01-py3")


def test_cards_without_onnx_requirements_are_refused_with_the_fix(iris_fit):
    card = iris_fit.card
    legacy = type(card).from_dict({k: v for k, v in card.to_dict().items() if k != "onnx"})
    with pytest.raises(runtimes.RuntimeIncompatible, match="re-package it with `pipeserve run"):
        build_inference_service(legacy, "s3://models/iris/", DeploymentSpec(target="triton-cpu"))


def test_every_runtime_version_maps_to_a_known_onnxruntime():
    for runtime, tags in runtimes.RUNTIME_ONNXRUNTIME.items():
        for tag, ort in tags.items():
            ort_minor = ".".join(ort.split(".")[:2])
            assert runtimes.onnx_target(runtime, tag).limits == runtimes.ONNXRUNTIME_LIMITS[ort_minor]
    limits = list(runtimes.ONNXRUNTIME_LIMITS.values())
    assert limits == sorted(limits)  # newer ONNX Runtimes load at least what older ones do
