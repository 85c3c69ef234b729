"""pipeserve.packaging and pipeserve.modelcard: layout, Triton config, parity, hashes, skops allow-list."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import skops.io
from google.protobuf import text_format
from sklearn.linear_model import LogisticRegression
from tritonclient.grpc import model_config_pb2

from pipeserve import modelcard, packaging
from pipeserve.errors import ConfigError, IntegrityError, NotFound, ParityError, UserError
from pipeserve.workflow import fit_and_package


def _parse_triton(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_layout_card_and_hashes(iris_fit):
    model_dir = iris_fit.model_dir
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()) == [
        "1/model.onnx", "1/model.skops", "config.pbtxt", "model-card.json"]
    card = modelcard.read_card(model_dir)
    assert card == iris_fit.card
    assert set(card.files) == {"1/model.onnx", "1/model.skops", "config.pbtxt"}
    for rel, digest in card.files.items():
        assert digest == modelcard.sha256_file(model_dir / rel)
    raw = json.loads((model_dir / "model-card.json").read_text())
    for key in ("name", "version", "task", "estimator", "metrics", "inputs", "outputs", "data", "libraries", "files"):
        assert key in raw
    assert raw["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4], "feature_names": [
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]}]
    assert raw["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3], "labels": [0, 1, 2]},
    ]
    assert raw["data"]["fingerprint"].startswith("sha256:") and raw["data"]["rows"] == 150
    libraries = {"scikit-learn", "skl2onnx", "onnx", "onnxruntime", "skops", "numpy", "pipeserve", "python"}
    assert libraries <= set(raw["libraries"])
    assert raw["parity"]["passed"] is True and raw["parity"]["label_mismatches"] == 0
    modelcard.verify_files(model_dir, card)
    modelcard.verify_files(model_dir, modelcard.ModelCard.from_dict(card.to_dict()))


def test_triton_config_parses_and_matches_onnx(iris_fit):
    config = _parse_triton((iris_fit.model_dir / "config.pbtxt").read_text())
    assert config.name == "iris" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 0
    session = ort.InferenceSession(str(iris_fit.model_dir / "1" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == [i.name for i in config.input] == ["input"]
    assert [o.name for o in session.get_outputs()] == [o.name for o in config.output] == ["label", "probabilities"]
    assert list(config.input[0].dims) == [-1, 4]
    assert list(config.version_policy.specific.versions) == [1]


def test_triton_batching_rules():
    inputs, outputs = packaging.signature(
        LogisticRegression().fit(np.eye(3, dtype=np.float32), [0, 1, 2]), "classification", 3, ["a", "b", "c"])
    config = _parse_triton(packaging.triton_config("m", "2", inputs, outputs, max_batch_size=64))
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [3]  # batch dimension left out
    label = config.output[0]
    assert list(label.dims) == [1] and label.HasField("reshape") and list(label.reshape.shape) == []
    assert list(config.output[1].dims) == [3]


def test_regressor_signature_and_parity(diabetes_fit):
    card = diabetes_fit.card
    assert [o.to_dict() for o in card.outputs] == [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
    session = ort.InferenceSession(str(diabetes_fit.model_dir / "1" / "model.onnx"))
    X = diabetes_fit.split.X_test
    (pred,) = session.run(None, {"input": X})
    assert pred.shape == (len(X),)
    np.testing.assert_allclose(pred, diabetes_fit.model.predict(X), rtol=1e-4, atol=1e-3)
    _parse_triton((diabetes_fit.model_dir / "config.pbtxt").read_text())


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_tree_models_pass_parity(tmp_path, estimator):
    for source in ("wine", "diabetes"):
        result = fit_and_package(source, tmp_path, estimator=estimator, name=f"{source}-{estimator.replace('_', '-')}")
        assert result.card.parity["passed"]


def test_string_classes_become_bytes_labels(tmp_path):
    frame = pd.DataFrame({"x1": np.r_[np.zeros(10), np.ones(10)], "x2": np.arange(20.0),
                          "kind": ["cat"] * 10 + ["dog"] * 10})
    frame.to_csv(tmp_path / "pets.csv", index=False)
    result = fit_and_package(str(tmp_path / "pets.csv"), tmp_path / "repo", target="kind")
    assert result.card.name == "pets"
    label, proba = result.card.outputs
    assert label.datatype == "BYTES" and proba.labels == ["cat", "dog"]
    config = _parse_triton((result.model_dir / "config.pbtxt").read_text())
    assert model_config_pb2.DataType.Name(config.output[0].data_type) == "TYPE_STRING"


def test_parity_failure_names_rows(iris_fit):
    onx = packaging.to_onnx(iris_fit.model, "classification", 4).SerializeToString()
    other = LogisticRegression(C=1e-4).fit(iris_fit.split.X_test, iris_fit.split.y_test)
    with pytest.raises(ParityError, match=r"disagree on \d+ of 30 test rows: row \d+: label"):
        packaging.parity_check(onx, other, iris_fit.split.X_test, "classification")


def test_failed_packaging_keeps_the_previous_model(tmp_path, iris_fit, monkeypatch):
    result = fit_and_package("iris", tmp_path, name="iris")
    before = (result.model_dir / "model-card.json").read_text()

    def broken(*args, **kwargs):
        raise ParityError("simulated disagreement")

    monkeypatch.setattr(packaging, "parity_check", broken)
    with pytest.raises(ParityError):
        fit_and_package("iris", tmp_path, name="iris", estimator="random_forest")
    assert (result.model_dir / "model-card.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["iris"]  # no staging leftovers


def test_repackaging_replaces_the_model(tmp_path):
    fit_and_package("iris", tmp_path, name="iris")
    second = fit_and_package("iris", tmp_path, name="iris", estimator="random_forest")
    assert modelcard.read_card(tmp_path / "iris").estimator["name"] == "random_forest"
    modelcard.verify_files(tmp_path / "iris", second.card)


@pytest.mark.parametrize(("name", "version", "message"), [
    ("Iris", "1", "Model name 'Iris' is not valid"),
    ("iris_v2", "1", "not valid"),
    ("iris", "v1", "positive integer"),
    ("iris", "0", "positive integer"),
])
def test_bad_name_or_version(tmp_path, name, version, message):
    with pytest.raises(ConfigError, match=message):
        fit_and_package("iris", tmp_path, name=name, version=version)


def test_tampered_file_is_detected(tmp_path):
    result = fit_and_package("iris", tmp_path, name="iris")
    onnx_path = result.model_dir / "1" / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    (result.model_dir / "extra.bin").write_bytes(b"x")
    with pytest.raises(IntegrityError, match=r"1/model.onnx: sha256 .* card says .*extra.bin: not listed"):
        modelcard.verify_files(result.model_dir, result.card)
    (result.model_dir / "config.pbtxt").unlink()
    with pytest.raises(IntegrityError, match="config.pbtxt: missing"):
        modelcard.verify_files(result.model_dir, result.card)


def test_skops_allow_list(tmp_path, iris_fit):
    assert type(packaging.load_estimator(iris_fit.model_dir / "1" / "model.skops")).__name__ == "LogisticRegression"
    import subprocess

    from sklearn.preprocessing import FunctionTransformer

    skops.io.dump(FunctionTransformer(func=subprocess.call), tmp_path / "evil.skops")
    with pytest.raises(IntegrityError, match="types pipeserve does not trust: subprocess.call"):
        packaging.load_estimator(tmp_path / "evil.skops")


def iris_fit_card_dict(repo):
    return json.loads((repo / "iris" / "model-card.json").read_text())


def test_card_reading_errors(tmp_path, iris_repo):
    with pytest.raises(UserError, match="No model-card.json"):
        modelcard.read_card(tmp_path)
    (tmp_path / "model-card.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        modelcard.read_card(tmp_path)
    (tmp_path / "model-card.json").write_text(json.dumps({**iris_fit_card_dict(iris_repo), "schema_version": 2}))
    with pytest.raises(UserError, match="schema version 2 is not supported; this pipeserve reads version 1"):
        modelcard.read_card(tmp_path)
    (tmp_path / "model-card.json").write_text('{"name": "x"}')
    with pytest.raises(UserError, match="not a pipeserve model card"):
        modelcard.read_card(tmp_path)
    assert modelcard.find_model_dirs(iris_repo) == [iris_repo / "iris"]
    assert modelcard.find_model_dirs(iris_repo / "iris") == [iris_repo / "iris"]
    with pytest.raises(NotFound):
        modelcard.find_model_dirs(tmp_path / "nope")
    card = modelcard.read_card(iris_repo / "iris")
    assert card.output("label").datatype == "INT64"
    with pytest.raises(NotFound, match="has no output 'nope'; its outputs are: label, probabilities"):
        card.output("nope")
