"""Table-driven bad-input suite: every case gets the right status and a message saying what was
expected and what was got, as {"error": ...}; the next request on the same keep-alive connection
succeeds. The table runs twice: against the real server (a child process), and against the same
ASGI app in this process (httpx's ASGI transport), where coverage and a debugger see it."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from serving_support import AsgiClient, connection, load, start_server

from pipeserve.localserver import LocalServer

MAX_BYTES = 65536
INFER = "/v2/models/iris/infer"
JSON_CT = {"Content-Type": "application/json"}
ROW = [6.8, 2.8, 4.8, 1.4]


def _req(*, name="input", datatype="FP32", shape=(1, 4), data: Any = ROW, **extra: Any) -> bytes:
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(shape)}
    if data is not ...:
        tensor["data"] = data
    tensor.update(extra.pop("tensor", {}))
    return json.dumps({"inputs": [tensor], **extra}).encode()


def _binary(x: np.ndarray | bytes, *, shape=None, size=None, header_len_delta=0, trailing=b"", **extra: Any):
    raw = x if isinstance(x, bytes) else np.asarray(x, dtype=np.float32).tobytes()
    shape = shape if shape is not None else list(np.asarray(x).shape)
    params = {"binary_data_size": len(raw) if size is None else size}
    tensor = {"name": "input", "datatype": "FP32", "shape": shape, "parameters": params}
    header = json.dumps({"inputs": [tensor], **extra}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header) + header_len_delta),
               "Content-Type": "application/octet-stream"}
    return header + raw + trailing, headers


class Case(NamedTuple):
    id: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    status: int
    message: str


def _c(id: str, body: bytes | None, status: int, message: str, *, method="POST", path=INFER, headers=None) -> Case:
    return Case(id, method, path, body, JSON_CT if headers is None else headers, status, message)


_bin_ok, _bin_headers = _binary(np.array([ROW]))
CASES = [
    # --- body is not a request ---
    _c("malformed-json", b'{"inputs": [', 400, "not valid JSON"),
    _c("empty-body", b"", 400, "body is empty"),
    _c("json-array", b"[]", 400, "got a JSON list"),
    _c("json-string", b'"hello"', 400, "got a JSON str"),
    _c("missing-inputs", b'{"foo": 1}', 400, "Expected 'inputs' to be a list"),
    _c("inputs-object", b'{"inputs": {"name": "input"}}', 400, "got an object"),
    _c("inputs-empty", b'{"inputs": []}', 400, "got no inputs"),
    _c("input-not-object", b'{"inputs": [1]}', 400, "inputs[0] must be an object"),
    _c("input-no-name", b'{"inputs": [{"datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}',
       400, "inputs[0].name must be a string"),
    # --- datatype ---
    _c("missing-datatype", b'{"inputs": [{"name": "input", "shape": [1, 4], "data": [1, 2, 3, 4]}]}',
       400, "datatype must be one of"),
    _c("unknown-datatype", _req(datatype="FP99"), 400, "got 'FP99'"),
    _c("lowercase-datatype", _req(datatype="fp32"), 400, "got 'fp32'"),
    _c("bytes-datatype", _req(datatype="BYTES", data=["a", "b", "c", "d"]),
       400, "must have datatype FP32 or FP64; got BYTES"),
    _c("int64-datatype", _req(datatype="INT64", data=[1, 2, 3, 4]), 400, "got INT64"),
    _c("bool-datatype", _req(datatype="BOOL", data=[True, False, True, False]), 400, "got BOOL"),
    _c("fp16-datatype", _req(datatype="FP16"), 400, "got FP16"),
    # --- shape ---
    _c("missing-shape", b'{"inputs": [{"name": "input", "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
       400, "shape must be a list of non-negative integers"),
    _c("negative-shape", _req(shape=(-1, 4)), 400, "shape must be a list of non-negative integers; got [-1, 4]"),
    _c("string-shape", _req(shape="1,4"), 400, "shape must be a list"),
    _c("float-shape", _req(shape=(1.0, 4)), 400, "shape must be a list of non-negative integers"),
    _c("one-d-shape", _req(shape=(4,)), 400, "must have shape [N, 4] (N rows of 4 features); got [4]"),
    _c("wrong-feature-count", _req(shape=(2, 3), data=[1, 2, 3, 4, 5, 6]),
       400, "must have shape [N, 4] (N rows of 4 features); got [2, 3]"),
    _c("three-d-shape", _req(shape=(1, 4, 1)), 400, "got [1, 4, 1]"),
    _c("zero-rows", _req(shape=(0, 4), data=[]), 400, "at least one row"),
    # --- data ---
    _c("data-too-short", _req(shape=(2, 4), data=[1, 2, 3, 4, 5, 6, 7]), 400, "shape [2, 4] needs 8 values; got 7"),
    _c("data-too-long", _req(shape=(1, 4), data=[1, 2, 3, 4, 5]), 400, "needs 4 values; got 5"),
    _c("ragged-nested", _req(shape=(2, 4), data=[[1, 2, 3, 4], [1, 2, 3]]), 400, "ragged nested list"),
    _c("nested-shape-mismatch", _req(shape=(2, 4), data=[[1, 2], [3, 4], [5, 6], [7, 8]]), 400,
       "nested data has shape [4, 2]; the declared shape is [2, 4]"),
    _c("missing-data", _req(data=...), 400, "has no 'data'"),
    _c("data-string", _req(data="1,2,3,4"), 400, "data must be a JSON array of numbers; got str"),
    _c("data-strings", _req(data=["6.8", "2.8", "4.8", "1.4"]), 400, "FP32 data must be numbers; got strings"),
    _c("data-booleans", _req(data=[True, False, True, False]), 400, "got booleans"),
    _c("data-null", _req(data=[None, 1, 2, 3]), 400, "got mixed or non-numeric values"),
    _c("data-objects", _req(data=[{}, 1, 2, 3]), 400, "got mixed or non-numeric values"),
    _c("nan-literal", _req().replace(b"6.8", b"NaN"), 400, "not valid JSON"),
    _c("infinite-literal", _req().replace(b"6.8", b"1e999"), 400, "not valid JSON"),
    _c("fp32-overflow", _req(data=[1e39, 1, 2, 3]), 400, "must hold finite numbers"),
    _c("binary-nan", *_binary(np.array([[1, np.nan, 3, 4]]))[:1],
       400, "got 1 non-finite value(s)", headers=_bin_headers),
    _c("binary-inf", _binary(np.array([[1, np.inf, 3, -np.inf]]))[0],
       400, "got 2 non-finite value(s)", headers=_bin_headers),
    # --- names ---
    _c("wrong-input-name", _req(name="x"), 400, "got an input named 'x'"),
    _c("two-inputs", json.dumps({"inputs": [json.loads(_req())["inputs"][0]] * 2}).encode(), 400, "got 2 inputs"),
    _c("unknown-model", _req(),
       404, "Model 'nope' is not served here; served models: iris", path="/v2/models/nope/infer"),
    _c("unknown-version", _req(),
       404, "has no version '9'; its versions are: 1", path="/v2/models/iris/versions/9/infer"),
    _c("unknown-version-metadata", None, 404, "has no version '2'", method="GET", path="/v2/models/iris/versions/2"),
    _c("unknown-model-ready", None, 404, "not served here", method="GET", path="/v2/models/nope/ready"),
    _c("unknown-output", _req(outputs=[{"name": "nope"}]),
       404, "has no output 'nope'; its outputs are: label, probabilities"),
    _c("outputs-empty", _req(outputs=[]), 400, "'outputs' must name at least one of label, probabilities"),
    _c("outputs-not-list", _req(outputs="label"), 400, "'outputs' must be a list"),
    _c("output-no-name", _req(outputs=[{"nam": "label"}]), 400, "outputs[0] must be an object with a string 'name'"),
    _c("output-binary-not-bool", _req(outputs=[{"name": "label", "parameters": {"binary_data": "yes"}}]),
       400, "binary_data must be true or false"),
    _c("binary-output-not-bool", _req(parameters={"binary_data_output": 1}),
       400, "binary_data_output must be true or false"),
    _c("id-not-string", _req(id=7), 400, "'id' must be a string"),
    _c("parameters-not-object", _req(parameters=[1]), 400, "'parameters' must be an object"),
    # --- transport ---
    _c("content-type-text", _req(), 415, "got 'text/plain'", headers={"Content-Type": "text/plain"}),
    _c("content-type-form", _req(),
       415, "got 'application/x-www-form-urlencoded'", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    _c("get-on-infer", None, 405, "accepts POST; got GET", method="GET"),
    _c("post-on-ready", b"{}", 405, "accepts GET or HEAD; got POST", path="/v2/health/ready"),
    _c("delete-metadata", None, 405, "got DELETE", method="DELETE", path="/v2/models/iris"),
    _c("unknown-route", None, 404, "No route GET /v3", method="GET", path="/v3"),
    _c("unknown-subroute", None, 404, "No route GET /v2/models/iris/foo", method="GET", path="/v2/models/iris/foo"),
    _c("empty-version", None, 404, "the version is empty", method="GET", path="/v2/models/iris/versions//ready"),
    _c("oversized-content-length", _req(shape=(4000, 4), data=[ROW] * 4000), 413, f"at most {MAX_BYTES} bytes"),
    # --- binary extension ---
    _c("binary-header-too-long", _bin_ok, 400, "Inference-Header-Content-Length must be between 1 and the body size",
       headers={**_bin_headers, "Inference-Header-Content-Length": str(len(_bin_ok) + 1)}),
    _c("binary-header-zero", _bin_ok,
       400, "must be between 1 and the body size", headers={**_bin_headers, "Inference-Header-Content-Length": "0"}),
    _c("binary-header-not-number", _bin_ok,
       400, "must be a non-negative integer; got 'abc'",
       headers={**_bin_headers, "Inference-Header-Content-Length": "abc"}),
    _c("binary-size-vs-shape", *_binary(np.array([ROW]), shape=[2, 4])[:1],
       400, "shape [2, 4] of FP32 needs 32 bytes; got 16",
       headers=_binary(np.array([ROW]), shape=[2, 4])[1]),
    _c("binary-trailing-bytes", *_binary(np.array([ROW]), trailing=b"xx")[:1],
       400, "binary part of the body has 18 bytes",
       headers=_binary(np.array([ROW]), trailing=b"xx")[1]),
    _c("binary-size-too-big", *_binary(np.array([ROW]), size=32)[:1],
       400, "declares binary_data_size 32 at offset 0; the binary part has only 16",
       headers=_binary(np.array([ROW]), size=32)[1]),
    _c("binary-size-negative", *_binary(np.array([ROW]), size=-1)[:1],
       400, "binary_data_size must be a non-negative integer",
       headers=_binary(np.array([ROW]), size=-1)[1]),
    _c("binary-size-without-header", _binary(np.array([ROW]))[0], 400, "not valid JSON"),
    _c("binary-size-json-only", _req(data=..., tensor={"parameters": {"binary_data_size": 16}}),
       400, "no Inference-Header-Content-Length header"),
    _c("binary-and-data", _req(tensor={"parameters": {"binary_data_size": 0}}),
       400, "no Inference-Header-Content-Length"),
    # --- KServe v1 ---
    _c("v1-no-instances", b'{"inputs": []}', 400, 'got no "instances"', path="/v1/models/iris:predict"),
    _c("v1-empty-instances", b'{"instances": []}',
       400, '"instances" must be a non-empty list', path="/v1/models/iris:predict"),
    _c("v1-wrong-width", b'{"instances": [[1, 2, 3]]}', 400, "got [1, 3]", path="/v1/models/iris:predict"),
    _c("v1-strings", b'{"instances": [["a", "b", "c", "d"]]}', 400, "got strings", path="/v1/models/iris:predict"),
    _c("v1-unknown-model", b'{"instances": [[1, 2, 3, 4]]}', 404, "not served here", path="/v1/models/nope:predict"),
    _c("v1-dict-missing-feature", b'{"instances": [{"sepal length (cm)": 1}]}',
       400, "must have exactly the features", path="/v1/models/iris:predict"),
    _c("v1-text-plain", b'{"instances": [[1, 2, 3, 4]]}',
       415, "Expected Content-Type application/json", path="/v1/models/iris:predict",
       headers={"Content-Type": "text/plain"}),
]


@pytest.fixture(scope="module")
def strict_server(iris_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = start_server(iris_repo, tmp_path_factory.mktemp("strict"), "--max-request-bytes", str(MAX_BYTES),
                          grpc=False)
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def conn(strict_server: LocalServer):
    keep_alive = connection(strict_server)
    yield keep_alive
    keep_alive.close()


def _roundtrip(conn, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes, Any]:
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read(), resp


GOOD = _req(shape=(2, 4), data=[ROW, [6.0, 3.4, 4.5, 1.6]])


def _assert_good_request(conn) -> None:
    status, body, resp = _roundtrip(conn, "POST", INFER, GOOD, JSON_CT)
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == [1, 1]


def _assert_refused(case: Case, status: int, body: bytes, header: Any) -> None:
    """``header(name)`` reads a response header."""
    assert header("content-type") == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"error"}, payload
    assert status == case.status, payload
    assert case.message in payload["error"], payload["error"]
    if status == 405:
        assert header("allow")


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(conn, case: Case) -> None:
    status, body, resp = _roundtrip(conn, case.method, case.path, case.body, case.headers)
    _assert_refused(case, status, body, resp.getheader)
    # The same keep-alive connection serves the next request.
    _assert_good_request(conn)


@pytest.fixture(scope="module")
def asgi(iris_repo: Path) -> AsgiClient:
    return AsgiClient([load(iris_repo / "iris")], max_request_bytes=MAX_BYTES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(asgi: AsgiClient, case: Case) -> None:
    resp = asgi.request(case.method, case.path, case.body, case.headers)
    _assert_refused(case, resp.status_code, resp.content, resp.headers.get)
    good = asgi.request("POST", INFER, GOOD, JSON_CT)
    assert good.status_code == 200 and good.json()["outputs"][0]["data"] == [1, 1]


def test_chunked_oversized_body_is_413_and_connection_survives(conn) -> None:
    chunks = [_req(shape=(4000, 4), data=[ROW] * 4000)[i : i + 8192] for i in range(0, 200_000, 8192)]
    conn.request("POST", INFER, body=iter([c for c in chunks if c]), headers=JSON_CT, encode_chunked=True)
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    assert resp.status == 413 and "at most 65536 bytes" in payload["error"]
    _assert_good_request(conn)


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("FP64", ROW), ("FP32", [7, 3, 5, 1]), ("FP32", [ROW])],
    ids=["fp64-accepted", "integers-as-floats", "nested"],
)
def test_lenient_but_well_defined(conn, datatype: str, data: Any) -> None:
    # No Content-Type, as tritonclient sends it.
    status, body, _ = _roundtrip(conn, "POST", INFER, _req(datatype=datatype, data=data), {})
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["shape"] == [1]


def test_binary_bytes_output_and_requested_binary(conn) -> None:
    body, headers = _binary(np.array([ROW, ROW]), outputs=[{"name": "label", "parameters": {"binary_data": True}},
                                                          {"name": "probabilities"}])
    status, raw, resp = _roundtrip(conn, "POST", INFER, body, headers)
    assert status == 200
    header_len = int(resp.getheader("inference-header-content-length"))
    header = json.loads(raw[:header_len])
    label, proba = header["outputs"]
    assert label["parameters"]["binary_data_size"] == 16 and "data" not in label
    assert np.frombuffer(raw[header_len:], dtype="<i8").tolist() == [1, 1]
    assert len(proba["data"]) == 6


def test_head_and_metrics(conn) -> None:
    status, body, resp = _roundtrip(conn, "GET", "/metrics", None, {})
    assert status == 200 and resp.getheader("content-type").startswith("text/plain")
    text = body.decode()
    assert 'pipeserve_requests_total{model="iris",route="infer",status="400"}' in text
    assert 'pipeserve_requests_total{model="",route="unknown",status="404"}' in text
    assert "pipeserve_request_duration_seconds_bucket" in text
    assert 'pipeserve_inference_rows_bucket{le="2.0",model="iris"}' in text
    assert 'pipeserve_model_load_seconds{model="iris"}' in text


def test_bytes_struct_sanity() -> None:
    # The BYTES wire format used for string labels: 4-byte little-endian length prefix.
    from pipeserve.serving.tensors import array_from_bytes, array_to_bytes

    arr = np.array(["setosa", "virginica"], dtype=object)
    raw = array_to_bytes(arr, "BYTES")
    assert raw[:4] == struct.pack("<I", 6)
    assert array_from_bytes(raw, "BYTES", [2], "x").tolist() == [b"setosa", b"virginica"]
