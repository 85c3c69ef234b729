"""REST adapter: a raw ASGI app for the Open Inference Protocol (v2) and KServe's v1 predict.

No framework: routing is a dict lookup plus one split, bodies are parsed with orjson, static
answers (health, metadata) are precomputed bytes, and every error -- ours or unexpected -- is
answered as ``{"error": "..."}`` by this app itself, so the server never drops a keep-alive
connection and never sends a framework-shaped body.

Content types (infer and v1 predict): with an ``Inference-Header-Content-Length`` header the
body is the binary tensor extension (JSON header + raw tensors) whatever the Content-Type; without
it the body must be JSON and Content-Type must be absent (tritonclient sends none) or
``application/json``; anything else is 415.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from pipeserve.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PipeserveError,
    UnsupportedMediaType,
)
from pipeserve.serving import tensors
from pipeserve.serving.dataplane import (
    DataPlane,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    RequestInput,
)

log = logging.getLogger("pipeserve.serve")
access_log = logging.getLogger("pipeserve.access")

JSON = b"application/json"
_JSON_HEADERS = [(b"content-type", JSON)]
_GET = ("GET", "HEAD")
_POST = ("POST",)
_dumps = orjson.dumps
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class RouteMethodNotAllowed(MethodNotAllowed):
    """405 that knows which methods the route takes (for the Allow header)."""

    def __init__(self, path: str, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{path} accepts {' or '.join(allowed)}; got {method}.")
        self.allow = ", ".join(allowed)


class _Disconnected(Exception):
    """The client went away while sending its body; nothing to answer."""


def _error_body(message: str) -> bytes:
    return _dumps({"error": message})


class RestApp:
    """The ASGI application.

    Args:
        dataplane: The data plane every route calls.
        metrics: A :class:`~pipeserve.serving.metrics.Metrics`, or None for no metrics.
        max_request_bytes: Bodies larger than this get 413, checked on Content-Length before reading.
        access_log: Log one line per request.
    """

    def __init__(self, dataplane: DataPlane, metrics: Any, max_request_bytes: int, access_log: bool = False) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.access_log = access_log
        self._live = _dumps({"live": True})
        self._ready = _dumps({"ready": True})
        self._not_ready = _dumps({"ready": False})
        self._server_meta = _dumps(dataplane.server_metadata)
        self._models_index = _dumps({"models": sorted(dataplane.models)})
        self._model_meta = {name: _dumps(m.metadata) for name, m in dataplane.models.items()}
        self._model_ready = {name: _dumps({"name": name, "ready": True}) for name in dataplane.models}
        self._model_not_ready = {name: _dumps({"name": name, "ready": False}) for name in dataplane.models}
        self._v1_meta = self._model_ready

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        start = time.perf_counter()
        labels = ["", "unknown"]  # model, route: set by _dispatch as soon as they are known
        extra_headers: list[tuple[bytes, bytes]] | None = None
        try:
            status, body, extra_headers = await self._dispatch(scope, receive, labels)
        except _Disconnected:
            return
        except PipeserveError as exc:
            status, body = int(exc.status_code), _error_body(exc.message)
            if isinstance(exc, RouteMethodNotAllowed):
                extra_headers = [*_JSON_HEADERS, (b"allow", exc.allow.encode())]
        except Exception as exc:  # a bug of ours: answer 500, keep the connection, log the traceback
            log.exception("Unhandled error on %s %s", scope["method"], scope["path"])
            status, body = 500, _error_body(f"Internal server error ({type(exc).__name__}); see the server log.")
        headers = [(b"content-length", str(len(body)).encode())]
        headers += _JSON_HEADERS if extra_headers is None else extra_headers
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self.metrics is not None:
            self.metrics.observe(labels[0], labels[1], status, time.perf_counter() - start)
        if self.access_log:
            access_log.info(
                '%s "%s %s" %d %.2fms', (scope.get("client") or ("-",))[0], scope["method"], scope["path"],
                status, (time.perf_counter() - start) * 1000,
            )

    # --- routing -------------------------------------------------------------------------------

    async def _dispatch(self, scope: dict, receive: Any, labels: list[str]) -> tuple[int, bytes, list | None]:
        path: str = scope["path"]
        method: str = scope["method"]
        dp = self.dataplane
        if path.startswith("/v2/models/"):
            parts = path[11:].split("/")
            name = parts[0]
            version = None
            if len(parts) >= 3 and parts[1] == "versions":
                version = parts[2]
                if not version:
                    raise NotFound(f"No route {path}: the version is empty.")
                tail = parts[3:]
            else:
                tail = parts[1:]
            labels[0] = name if name in dp.models else ""
            if not tail:
                labels[1] = "metadata"
                _allow(method, _GET, path)
                dp.model(name, version)
                return 200, self._model_meta[name], None
            if len(tail) == 1 and tail[0] == "infer":
                labels[1] = "infer"
                _allow(method, _POST, path)
                return await self._infer(scope, receive, name, version)
            if len(tail) == 1 and tail[0] == "ready":
                labels[1] = "model_ready"
                _allow(method, _GET, path)
                if dp.model_ready(name, version):
                    return 200, self._model_ready[name], None
                return 503, self._model_not_ready[name], None
            raise NotFound(_no_route(method, path))
        if path == "/v2/health/live":
            labels[1] = "live"
            _allow(method, _GET, path)
            return 200, self._live, None
        if path == "/v2/health/ready":
            labels[1] = "ready"
            _allow(method, _GET, path)
            return (200, self._ready, None) if dp.ready else (503, self._not_ready, None)
        if path == "/v2" or path == "/v2/":
            labels[1] = "server_metadata"
            _allow(method, _GET, path)
            return 200, self._server_meta, None
        if path == "/v2/models":
            labels[1] = "models"
            _allow(method, _GET, path)
            return 200, self._models_index, None
        if path == "/metrics":
            labels[1] = "metrics"
            _allow(method, _GET, path)
            if self.metrics is None:
                raise NotFound("Metrics are disabled on this server.")
            return 200, self.metrics.render(), [(b"content-type", self.metrics.content_type.encode())]
        if path.startswith("/v1/models/"):
            rest = path[11:]
            if rest.endswith(":predict"):
                name = rest[:-8]
                labels[0] = name if name in dp.models else ""
                labels[1] = "v1_predict"
                _allow(method, _POST, path)
                return await self._predict_v1(scope, receive, name)
            if "/" not in rest and ":" not in rest:
                labels[0] = rest if rest in dp.models else ""
                labels[1] = "v1_metadata"
                _allow(method, _GET, path)
                dp.model(rest)
                return 200, self._v1_meta[rest], None
        raise NotFound(_no_route(method, path))

    # --- bodies --------------------------------------------------------------------------------

    async def _read_body(self, scope: dict, receive: Any, content_length: int | None) -> bytes:
        limit = self.max_request_bytes
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(
                f"Request body must be at most {limit} bytes (--max-request-bytes); got Content-Length {content_length}. "
                "Send fewer rows per request."
            )
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"Request body must be at most {limit} bytes (--max-request-bytes); got more. Send fewer rows per request."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _infer(self, scope: dict, receive: Any, name: str, version: str | None) -> tuple:
        content_type, content_length, header_length = _request_headers(scope["headers"])
        if header_length is None:
            _require_json(content_type)
        self.dataplane.model(name, version)
        body = await self._read_body(scope, receive, content_length)
        request = parse_infer_request(body, header_length)
        response = await self.dataplane.infer(name, version, request)
        body, headers = encode_infer_response(response)
        return 200, body, headers

    async def _predict_v1(self, scope: dict, receive: Any, name: str) -> tuple:
        content_type, content_length, _ = _request_headers(scope["headers"])
        _require_json(content_type)
        self.dataplane.model(name)
        body = await self._read_body(scope, receive, content_length)
        predictions = await self.dataplane.predict_v1(name, _loads(body))
        return 200, _dumps({"predictions": predictions}), None


def _no_route(method: str, path: str) -> str:
    return (
        f"No route {method} {path}. Routes: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/V][/ready], "
        "POST /v2/models/NAME[/versions/V]/infer, POST /v1/models/NAME:predict, GET /metrics."
    )


def _allow(method: str, allowed: tuple[str, ...], path: str) -> None:
    if method not in allowed:
        raise RouteMethodNotAllowed(path, method, allowed)


def _request_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, int | None, int | None]:
    content_type = content_length = header_length = None
    for key, value in headers:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            content_length = _int_header(value, "Content-Length")
        elif key == b"inference-header-content-length":
            header_length = _int_header(value, "Inference-Header-Content-Length")
    return content_type, content_length, header_length


def _int_header(value: bytes, name: str) -> int:
    if not value.isdigit():
        raise InvalidInput(f"Header {name} must be a non-negative integer; got {value.decode('latin-1')!r}.")
    return int(value)


def _require_json(content_type: bytes | None) -> None:
    if content_type is None:
        return
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != JSON:
        raise UnsupportedMediaType(
            f"Expected Content-Type application/json (or the binary tensor extension with an "
            f"Inference-Header-Content-Length header); got {content_type.decode('latin-1')!r}."
        )


def _loads(body: bytes | memoryview) -> Any:
    if not body:
        raise InvalidInput("Request body is empty; expected a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Request body is not valid JSON: {exc}.") from exc


def parse_infer_request(body: bytes, header_length: int | None) -> InferenceRequest:
    """Parse an OIP inference request body (JSON, or JSON header + binary tensors).

    Raises:
        InvalidInput: The body breaks the protocol (not the model's signature: that is checked
            by the data plane).
    """
    binary: memoryview | None = None
    if header_length is not None:
        if header_length == 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length must be between 1 and the body size ({len(body)} bytes); got {header_length}."
            )
        view = memoryview(body)
        binary = view[header_length:]
        obj = _loads(view[:header_length])
    else:
        obj = _loads(body)
    if not isinstance(obj, dict):
        raise InvalidInput(f'Expected a JSON object {{"inputs": [...]}}; got a JSON {type(obj).__name__}.')
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInput(
            f"Expected 'inputs' to be a list of tensors {{name, datatype, shape, data}}; got {_kind(raw_inputs)}."
        )
    inputs = []
    offset = 0
    for i, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise InvalidInput(f"inputs[{i}] must be an object {{name, datatype, shape, data}}; got {_kind(raw)}.")
        name = raw.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"inputs[{i}].name must be a string; got {_kind(name)}.")
        where = f"Input {name!r}"
        datatype = tensors.check_datatype(raw.get("datatype"), where)
        shape = tensors.check_shape(raw.get("shape"), where)
        params = raw.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidInput(f"{where}: parameters must be an object; got {_kind(params)}.")
        size = params.get("binary_data_size") if params else None
        if size is None:
            if "data" not in raw:
                raise InvalidInput(f"{where} has no 'data' (and no binary_data_size parameter).")
            inputs.append(RequestInput(name, datatype, shape, raw["data"]))
            continue
        if type(size) is not int or size < 0:  # noqa: E721 - bool is not a size
            raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer; got {size!r}.")
        if binary is None:
            raise InvalidInput(
                f"{where} has binary_data_size but the request has no Inference-Header-Content-Length header."
            )
        if "data" in raw:
            raise InvalidInput(f"{where} has both 'data' and binary_data_size; send one of them.")
        if offset + size > len(binary):
            raise InvalidInput(
                f"{where} declares binary_data_size {size} at offset {offset}; the binary part has only {len(binary)} bytes."
            )
        inputs.append(RequestInput(name, datatype, shape, binary[offset : offset + size], raw=True))
        offset += size
    if binary is not None and offset != len(binary):
        raise InvalidInput(
            f"The binary part of the body has {len(binary)} bytes; the inputs' binary_data_size add up to {offset}."
        )
    request = InferenceRequest(inputs)
    request_id = obj.get("id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise InvalidInput(f"'id' must be a string; got {_kind(request_id)}.")
        request.id = request_id
    params = obj.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise InvalidInput(f"'parameters' must be an object; got {_kind(params)}.")
        request.parameters = params
        flag = params.get("binary_data_output")
        if flag is not None:
            if not isinstance(flag, bool):
                raise InvalidInput(f"parameters.binary_data_output must be true or false; got {flag!r}.")
            request.binary_output = flag
    raw_outputs = obj.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput(f"'outputs' must be a list of {{name}} objects; got {_kind(raw_outputs)}.")
        outputs = []
        for i, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidInput(f"outputs[{i}] must be an object with a string 'name'; got {raw!r:.80}.")
            out_params = raw.get("parameters")
            binary_flag = None
            if out_params is not None:
                if not isinstance(out_params, dict):
                    raise InvalidInput(f"outputs[{i}].parameters must be an object; got {_kind(out_params)}.")
                binary_flag = out_params.get("binary_data")
                if binary_flag is not None and not isinstance(binary_flag, bool):
                    raise InvalidInput(f"outputs[{i}].parameters.binary_data must be true or false; got {binary_flag!r}.")
            outputs.append(RequestedOutput(raw["name"], binary_flag))
        request.outputs = outputs
    return request


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"a JSON {type(value).__name__}" if not isinstance(value, (dict, list)) else (
        "an object" if isinstance(value, dict) else "a list"
    )


def encode_infer_response(response: InferenceResponse) -> tuple[bytes, list[tuple[bytes, bytes]] | None]:
    """Encode a response as JSON, or as JSON header + binary tensors when any output is binary."""
    outputs = []
    blobs = []
    for out in response.outputs:
        item: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if out.binary:
            blob = tensors.array_to_bytes(out.data, out.datatype)
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = tensors.array_to_json(out.data, out.datatype)
        outputs.append(item)
    obj: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs}
    if response.id is not None:
        obj["id"] = response.id
    header = _dumps(obj, option=_NUMPY)
    if not blobs:
        return header, None
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(header)).encode()),
    ]
    return header + b"".join(blobs), headers
