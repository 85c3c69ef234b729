"""Real v2 clients (tritonclient HTTP/gRPC, kserve REST/gRPC) against the real server: health,
metadata, and parity with scikit-learn on the iris test split, in JSON and binary."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from pipeserve.packaging import load_estimator


@pytest.fixture(scope="module")
def iris_sklearn(iris_repo: Path):
    return load_estimator(iris_repo / "iris" / "1" / "model.skops")


@pytest.fixture(scope="module")
def X_test(iris_split) -> np.ndarray:
    return np.asarray(iris_split[0], dtype=np.float32)


def _expected(est, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return est.predict(X), est.predict_proba(X)


def test_tritonclient_http_health_and_metadata(iris_server) -> None:
    client = thttp.InferenceServerClient(url=iris_server.address)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server["name"] == "pipeserve" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("iris")
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert meta["parameters"]["task"] == "classification"
    assert meta["parameters"]["data_fingerprint"].startswith("sha256:")
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_tritonclient_http_parity(iris_server, iris_sklearn, X_test, binary_in, binary_out) -> None:
    client = thttp.InferenceServerClient(url=iris_server.address)
    inp = thttp.InferInput("input", list(X_test.shape), "FP32")
    inp.set_data_from_numpy(X_test, binary_data=binary_in)
    outputs = [thttp.InferRequestedOutput(n, binary_data=binary_out) for n in ("label", "probabilities")]
    result = client.infer("iris", [inp], outputs=outputs, request_id="req-42")
    labels, proba = _expected(iris_sklearn, X_test)
    assert result.get_response()["id"] == "req-42"
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba, atol=1e-4)
    assert result.as_numpy("label").dtype == np.int64


def test_tritonclient_http_requested_output_only(iris_server, X_test, iris_sklearn) -> None:
    client = thttp.InferenceServerClient(url=iris_server.address)
    inp = thttp.InferInput("input", list(X_test.shape), "FP32")
    inp.set_data_from_numpy(X_test, binary_data=True)
    result = client.infer("iris", [inp], outputs=[thttp.InferRequestedOutput("probabilities", binary_data=True)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris_sklearn.predict_proba(X_test), atol=1e-4)


@pytest.mark.parametrize("binary_out", [False, True])
def test_tritonclient_http_versioned_and_regression(diabetes_server, diabetes_repo, binary_out) -> None:
    est = load_estimator(diabetes_repo / "diabetes" / "1" / "model.skops")
    X = np.random.default_rng(0).normal(0, 0.05, size=(25, 10)).astype(np.float32)
    client = thttp.InferenceServerClient(url=diabetes_server.address)
    inp = thttp.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    result = client.infer("diabetes", [inp], model_version="1",
                          outputs=[thttp.InferRequestedOutput("prediction", binary_data=binary_out)])
    np.testing.assert_allclose(result.as_numpy("prediction"), est.predict(X), rtol=1e-4, atol=1e-2)


def test_tritonclient_grpc(iris_server, iris_sklearn, X_test) -> None:
    client = tgrpc.InferenceServerClient(url=iris_server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.get_server_metadata(as_json=True)["name"] == "pipeserve"
    meta = client.get_model_metadata("iris", as_json=True)
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    inp = tgrpc.InferInput("input", list(X_test.shape), "FP32")
    inp.set_data_from_numpy(X_test)
    result = client.infer("iris", [inp], request_id="g1")
    labels, proba = _expected(iris_sklearn, X_test)
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba, atol=1e-4)
    assert result.get_response().id == "g1"
    result = client.infer("iris", [inp], outputs=[tgrpc.InferRequestedOutput("label")])
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    assert result.as_numpy("probabilities") is None


@pytest.mark.parametrize(
    ("shape", "code", "message"),
    [
        ([3, 3], "StatusCode.INVALID_ARGUMENT", "must have shape [N, 4]"),
        ([2, 4], "StatusCode.NOT_FOUND", "not served here"),
    ],
)
def test_tritonclient_grpc_errors(iris_server, shape, code, message) -> None:
    client = tgrpc.InferenceServerClient(url=iris_server.grpc_url)
    inp = tgrpc.InferInput("input", shape, "FP32")
    inp.set_data_from_numpy(np.ones(shape, dtype=np.float32))
    model = "iris" if code.endswith("INVALID_ARGUMENT") else "nope"
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [inp])
    assert info.value.status() == code
    assert message in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_grpc_nan_is_invalid_argument(iris_server) -> None:
    client = tgrpc.InferenceServerClient(url=iris_server.grpc_url)
    x = np.array([[1, 2, np.nan, 4]], dtype=np.float32)
    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", [inp])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "finite" in info.value.message()


# kserve's clients run in a child process: this test process aliases kserve's generated OIP module to
# tritonclient's (tests/interop.py, called from tests/conftest.py); the child uses kserve's own stubs.
_KSERVE_SCRIPT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

url, grpc_url, x_path = sys.argv[1:4]
X = np.load(x_path)

async def main():
    out = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    out["live"] = await rest.is_server_live(url)
    out["ready"] = await rest.is_server_ready(url)
    out["model_ready"] = await rest.is_model_ready(url, "iris")
    for binary in (False, True):
        inp = InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        request = InferRequest(model_name="iris", infer_inputs=[inp], request_id="k1")
        res = await rest.infer(url, request, model_name="iris")
        out[f"rest_binary={binary}"] = {
            "id": res.id, **{o.name: o.as_numpy().tolist() for o in res.outputs}}
    await rest.close()
    grpc = InferenceGRPCClient(grpc_url)
    out["grpc_live"] = await grpc.is_server_live()
    out["grpc_ready"] = await grpc.is_server_ready()
    out["grpc_model_ready"] = await grpc.is_model_ready("iris")
    inp = InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    res = await grpc.infer(InferRequest(model_name="iris", infer_inputs=[inp], request_id="kg"))
    out["grpc"] = {"id": res.id, **{o.name: o.as_numpy().tolist() for o in res.outputs}}
    await grpc.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_kserve_rest_and_grpc_clients(iris_server, iris_sklearn, X_test, tmp_path) -> None:
    x_path = tmp_path / "x.npy"
    np.save(x_path, X_test)
    proc = subprocess.run(
        [sys.executable, "-c", _KSERVE_SCRIPT, iris_server.url, iris_server.grpc_url, str(x_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["grpc_live"] and out["grpc_ready"] and out["grpc_model_ready"]
    labels, proba = _expected(iris_sklearn, X_test)
    for key in ("rest_binary=False", "rest_binary=True", "grpc"):
        np.testing.assert_array_equal(out[key]["label"], labels, err_msg=key)
        np.testing.assert_allclose(out[key]["probabilities"], proba, atol=1e-4, err_msg=key)
    assert out["rest_binary=True"]["id"] == "k1" and out["grpc"]["id"] == "kg"


def test_kserve_v1_predict(iris_server, iris_sklearn, X_test) -> None:
    body = json.dumps({"instances": X_test.tolist()}).encode()
    req = urllib.request.Request(f"{iris_server.url}/v1/models/iris:predict", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        predictions = json.loads(resp.read())["predictions"]
    assert predictions == iris_sklearn.predict(X_test).tolist()


def test_grpc_typed_contents_and_errors(iris_server, iris_sklearn, X_test) -> None:
    """The stub directly: inputs in typed ``contents`` (not raw), plus the status-code mapping."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(iris_server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="iris", model_version="1", id="typed")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=list(X_test.shape))
        tensor.contents.fp32_contents.extend(X_test.ravel().tolist())
        response = stub.ModelInfer(request)
        assert response.id == "typed" and [o.name for o in response.outputs] == ["label", "probabilities"]
        labels = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
        np.testing.assert_array_equal(labels, iris_sklearn.predict(X_test))
        assert stub.ModelReady(pb.ModelReadyRequest(name="iris", version="1")).ready

        cases = [
            (dict(shape=[2, 4], values=[1.0] * 7), grpc.StatusCode.INVALID_ARGUMENT, "needs 8 values; got 7"),
            (dict(shape=[1, 4], values=[1.0] * 4, datatype="FP16"), grpc.StatusCode.INVALID_ARGUMENT,
             "raw_input_contents"),
            (dict(shape=[1, 4], values=[1.0] * 4, version="7"), grpc.StatusCode.NOT_FOUND, "no version '7'"),
            (dict(shape=[1, 4], values=[1.0] * 4, output="nope"), grpc.StatusCode.NOT_FOUND, "has no output 'nope'"),
            (dict(shape=[1, 4], values=[1.0, 2.0, float("inf"), 4.0]), grpc.StatusCode.INVALID_ARGUMENT, "finite"),
        ]
        for spec, code, message in cases:
            bad = pb.ModelInferRequest(model_name="iris", model_version=spec.get("version", ""))
            datatype = spec.get("datatype", "FP32")
            t = bad.inputs.add(name="input", datatype=datatype, shape=spec["shape"])
            if datatype == "FP32":
                t.contents.fp32_contents.extend(spec["values"])
            if "output" in spec:
                bad.outputs.add(name=spec["output"])
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(bad)
            assert info.value.code() == code, spec
            assert message in info.value.details(), info.value.details()
        raw = pb.ModelInferRequest(model_name="iris")
        raw.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        raw.raw_input_contents.extend([b"\0" * 16, b"\0" * 16])
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(raw)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "one entry per input (1); got 2" in info.value.details()
