"""The REST app in this process (httpx's ASGI transport): routing, metric labels, answers, and faults."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from serving_support import AsgiClient, load

from pipeserve.errors import NotFound
from pipeserve.serving.dataplane import DataPlane
from pipeserve.serving.rest import ModelPath, RestApp, parse_model_path
from pipeserve.serving.rest_codec import parse_infer_request

ROW = [6.8, 2.8, 4.8, 1.4]
BODY = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}]}).encode()


@pytest.fixture
def client(iris_repo: Path) -> AsgiClient:
    return AsgiClient([load(iris_repo / "iris")])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/iris", ModelPath("iris", None, "metadata")),
        ("/v2/models/iris/versions/1", ModelPath("iris", "1", "metadata")),
        ("/v2/models/iris/infer", ModelPath("iris", None, "infer")),
        ("/v2/models/iris/versions/1/infer", ModelPath("iris", "1", "infer")),
        ("/v2/models/iris/ready", ModelPath("iris", None, "model_ready")),
        ("/v2/models/iris/foo", ModelPath("iris", None, "unknown")),
        ("/v2/models/iris/", ModelPath("iris", None, "unknown")),
        ("/v2/models/iris/versions", ModelPath("iris", None, "unknown")),
        ("/v2/models/iris/versions/1/infer/x", ModelPath("iris", "1", "unknown")),
        ("/v1/models/iris", ModelPath("iris", None, "v1_metadata")),
        ("/v1/models/iris:predict", ModelPath("iris", None, "v1_predict")),
        ("/v1/models/a:b:predict", ModelPath("a:b", None, "v1_predict")),
        ("/v1/models/iris:explain", None),
        ("/v1/models/iris/x", None),
        ("/v2/health/live", None),
        ("/v3", None),
    ],
)
def test_parse_model_path(path: str, expected: ModelPath | None) -> None:
    assert parse_model_path(path) == expected


def test_an_empty_version_is_not_found() -> None:
    with pytest.raises(NotFound, match="the version is empty"):
        parse_model_path("/v2/models/iris/versions//infer")


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/v2/health/live", 200, {"live": True}),
        ("GET", "/v2/health/ready", 200, {"ready": True}),
        ("GET", "/v2/models", 200, {"models": ["iris"]}),
        ("GET", "/v2/models/iris/ready", 200, {"name": "iris", "ready": True}),
        ("GET", "/v2/models/iris/versions/1/ready", 200, {"name": "iris", "ready": True}),
        ("GET", "/v1/models/iris", 200, {"name": "iris", "ready": True}),
    ],
)
def test_fixed_answers(client: AsgiClient, method: str, path: str, status: int, body: dict) -> None:
    resp = client.request(method, path)
    assert (resp.status_code, resp.json()) == (status, body)
    assert resp.headers["content-type"] == "application/json"


def test_server_and_model_metadata(client: AsgiClient) -> None:
    for path in ("/v2", "/v2/"):
        assert client.request("GET", path).json()["name"] == "pipeserve"
    meta = client.request("GET", "/v2/models/iris/versions/1").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"


def test_infer_json_and_binary_output(client: AsgiClient, iris_fit) -> None:
    resp = client.request("POST", "/v2/models/iris/infer", BODY, {"Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json()["outputs"][0]["data"] == iris_fit.model.predict([ROW]).tolist()
    body = json.dumps({"inputs": json.loads(BODY)["inputs"], "parameters": {"binary_data_output": True}}).encode()
    resp = client.request("POST", "/v2/models/iris/infer", body)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/octet-stream"
    header_length = int(resp.headers["inference-header-content-length"])
    label = json.loads(resp.content[:header_length])["outputs"][0]
    assert label["parameters"]["binary_data_size"] == 8
    assert np.frombuffer(resp.content[header_length:header_length + 8], "<i8").tolist() == [1]


def test_v1_predict_with_lists_and_with_feature_names(client: AsgiClient, iris_fit) -> None:
    features = iris_fit.card.inputs[0].feature_names
    for instances in ([ROW], [dict(zip(features, ROW, strict=True))]):
        resp = client.request("POST", "/v1/models/iris:predict", json.dumps({"instances": instances}).encode())
        assert resp.status_code == 200 and resp.json() == {"predictions": iris_fit.model.predict([ROW]).tolist()}


def test_metric_labels_come_from_the_matched_route(client: AsgiClient) -> None:
    client.request("POST", "/v2/models/iris/infer", BODY)
    client.request("GET", "/v2/models/iris/foo")  # a model path, but no such route
    client.request("GET", "/v2/models/nope")  # no such model: no model label
    client.request("GET", "/v3")
    client.request("GET", "/v2/models/iris/versions//ready")
    client.request("DELETE", "/v2/health/live")
    text = client.request("GET", "/metrics").text
    for labels in (
        'model="iris",route="infer",status="200"',
        'model="iris",route="unknown",status="404"',
        'model="",route="metadata",status="404"',
        'model="",route="unknown",status="404"} 2.0',
        'model="",route="live",status="405"',
    ):
        assert f"pipeserve_requests_total{{{labels}" in text, labels


def test_readiness_goes_false_on_shutdown(client: AsgiClient) -> None:
    client.dataplane.begin_shutdown()
    assert client.request("GET", "/v2/health/ready").status_code == 503
    assert client.request("GET", "/v2/health/live").status_code == 200
    resp = client.request("GET", "/v2/models/iris/ready")
    assert (resp.status_code, resp.json()) == (503, {"name": "iris", "ready": False})


def test_no_metrics_means_404(iris_repo: Path) -> None:
    app = AsgiClient([load(iris_repo / "iris")])
    app.app = RestApp(app.dataplane, None, 1 << 20)
    resp = app.request("GET", "/metrics")
    assert (resp.status_code, resp.json()) == (404, {"error": "Metrics are disabled on this server."})


def test_a_bug_of_ours_is_a_500_with_a_pointer_to_the_log(client: AsgiClient, monkeypatch, caplog) -> None:
    async def broken(*args: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(client.dataplane, "infer", broken)
    resp = client.request("POST", "/v2/models/iris/infer", BODY)
    assert (resp.status_code, resp.json()) == (500, {"error": "Internal server error (KeyError); see the server log."})
    assert "Unhandled error on POST /v2/models/iris/infer" in caplog.text
    assert client.request("GET", "/v2/health/live").status_code == 200


def test_websockets_are_closed(iris_repo: Path) -> None:
    app = RestApp(DataPlane([load(iris_repo / "iris")]), None, 1 << 20)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "websocket", "path": "/"}, None, send))
    assert sent == [{"type": "websocket.close", "code": 1003}]
    asyncio.run(app({"type": "lifespan"}, None, send))
    assert len(sent) == 1


def test_parse_infer_request_keeps_id_parameters_and_outputs() -> None:
    body = json.dumps({"id": "a", "parameters": {"binary_data_output": True, "x": 1},
                       "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}],
                       "outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}]})
    request = parse_infer_request(body.encode(), None)
    assert (request.id, request.parameters, request.binary_output) == ("a", {"binary_data_output": True, "x": 1}, True)
    assert [(o.name, o.binary) for o in request.outputs] == [("label", False), ("probabilities", None)]
    assert request.inputs[0].data == ROW and not request.inputs[0].raw
