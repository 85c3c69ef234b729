"""The data plane without any transport: model lookup, health, signature checks, inference, failures."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from serving_support import load

from pipeserve.errors import InferenceError, InvalidInput, NotFound
from pipeserve.serving.dataplane import DataPlane, InferenceRequest, RequestedOutput, RequestInput, ServedModel
from pipeserve.serving.metrics import Metrics
from pipeserve.serving.signature import prepare

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def iris(iris_repo: Path) -> ServedModel:
    return load(iris_repo / "iris")


@pytest.fixture
def plane(iris: ServedModel) -> DataPlane:
    return DataPlane([iris], metrics=Metrics())


def _request(rows=ROWS, *, raw: bool = False, outputs=None, binary_output: bool = False, id=None) -> InferenceRequest:
    x = np.asarray(rows, dtype=np.float32)
    data = x.tobytes() if raw else x.ravel().tolist()
    return InferenceRequest([RequestInput("input", "FP32", list(x.shape), data, raw=raw)], outputs=outputs,
                            id=id, binary_output=binary_output)


def test_models_health_and_metadata(plane: DataPlane, iris: ServedModel) -> None:
    assert plane.live and plane.ready
    assert plane.model("iris") is iris and plane.model("iris", "1") is iris
    assert plane.model_ready("iris")
    with pytest.raises(NotFound, match="Model 'nope' is not served here; served models: iris"):
        plane.model("nope")
    with pytest.raises(NotFound, match="has no version '2'; its versions are: 1"):
        plane.model_ready("iris", "2")
    assert plane.server_metadata["name"] == "pipeserve" and "binary_tensor_data" in plane.server_metadata["extensions"]
    assert iris.metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    plane.begin_shutdown()
    assert not plane.ready and not plane.model_ready("iris") and plane.live


@pytest.mark.parametrize("raw", [False, True], ids=["json-data", "raw-bytes"])
def test_infer_matches_sklearn(plane: DataPlane, iris_fit, raw: bool) -> None:
    response = asyncio.run(plane.infer("iris", None, _request(raw=raw, id="r1")))
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "r1")
    label, proba = response.outputs
    assert (label.name, label.datatype, label.shape) == ("label", "INT64", [2])
    x = np.asarray(ROWS, np.float32)
    np.testing.assert_array_equal(label.data, iris_fit.model.predict(x))
    np.testing.assert_allclose(proba.data, iris_fit.model.predict_proba(x), atol=1e-5)
    assert not label.binary


def test_requested_outputs_and_binary_flags(plane: DataPlane) -> None:
    outputs = [RequestedOutput("probabilities", binary=False), RequestedOutput("label")]
    response = asyncio.run(plane.infer("iris", "1", _request(outputs=outputs, binary_output=True)))
    assert [(o.name, o.binary) for o in response.outputs] == [("probabilities", False), ("label", True)]


def test_big_batches_run_on_a_thread_with_the_same_answer(iris: ServedModel) -> None:
    rows = np.tile(np.asarray(ROWS, np.float32), (50, 1))
    inline = asyncio.run(DataPlane([iris]).infer("iris", None, _request(rows)))
    threaded = asyncio.run(DataPlane([iris], inline_rows=10).infer("iris", None, _request(rows)))
    np.testing.assert_array_equal(inline.outputs[0].data, threaded.outputs[0].data)


def test_rows_are_counted(plane: DataPlane) -> None:
    asyncio.run(plane.infer("iris", None, _request()))
    assert b'pipeserve_inference_rows_count{model="iris"} 1.0' in plane.metrics.render()


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (InferenceRequest([]), InvalidInput, "expects one input 'input' (FP32 [N, 4]); got no inputs"),
        (InferenceRequest([RequestInput("x", "FP32", [1, 4], [1, 2, 3, 4])]), InvalidInput, "got an input named 'x'"),
        (InferenceRequest([RequestInput("input", "INT64", [1, 4], [1, 2, 3, 4])]), InvalidInput,
         "must have datatype FP32 or FP64; got INT64"),
        (InferenceRequest([RequestInput("input", "FP32", [1, 3], [1, 2, 3])]), InvalidInput,
         "must have shape [N, 4] (N rows of 4 features); got [1, 3]"),
        (InferenceRequest([RequestInput("input", "FP32", [1, 4], [1, float("nan"), 3, 4])]), InvalidInput,
         "cannot take NaN or infinity); got 1 non-finite value(s)"),
        (_request(outputs=[]), InvalidInput, "'outputs' must name at least one of label, probabilities"),
        (_request(outputs=[RequestedOutput("nope")]), NotFound, "has no output 'nope'"),
    ],
    ids=["no-inputs", "wrong-name", "wrong-datatype", "wrong-shape", "nan", "no-outputs", "unknown-output"],
)
def test_signature_refusals(iris: ServedModel, request_: InferenceRequest, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        prepare(iris, request_)
    assert message in str(info.value)


def test_a_model_that_takes_nan_still_refuses_infinity(iris: ServedModel) -> None:
    card = dataclasses.replace(iris.card, estimator={**iris.card.estimator, "accepts_nan": True})
    lenient = ServedModel("lenient", card, iris.backend, 0.0)
    x, outputs = prepare(lenient, _request([[1.0, float("nan"), 3.0, 4.0]], raw=True))
    assert np.isnan(x[0, 1]) and [o.name for o in outputs] == ["label", "probabilities"]
    with pytest.raises(InvalidInput, match=r"may hold NaN \(missing values\) but not infinity; got 1"):
        prepare(lenient, _request([[1.0, float("inf"), 3.0, 4.0]], raw=True))


def test_a_failing_backend_is_an_inference_error(iris: ServedModel) -> None:
    class Broken:
        platform = "broken"

        def run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
            raise RuntimeError("kaboom")

    plane = DataPlane([ServedModel("iris", iris.card, Broken(), 0.0)])
    with pytest.raises(InferenceError, match="Model 'iris' failed on a valid request: RuntimeError: kaboom") as info:
        asyncio.run(plane.infer("iris", None, _request()))
    assert info.value.status_code == 500
