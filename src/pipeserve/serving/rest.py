"""REST adapter: a raw ASGI app for the Open Inference Protocol (v2) and KServe's v1 predict.

No framework: routing is one dict lookup for the fixed paths plus one parser for the model paths
(:func:`parse_model_path`), static answers (health, metadata) are precomputed bytes, bodies are
parsed with orjson (:mod:`pipeserve.serving.rest_codec`), and every error -- ours or unexpected --
is answered as ``{"error": "..."}`` by this app itself, so the server never drops a keep-alive
connection and never sends a framework-shaped body.

Content types (infer and v1 predict): with an ``Inference-Header-Content-Length`` header the
body is the binary tensor extension (JSON header + raw tensors) whatever the Content-Type; without
it the body must be JSON and Content-Type must be absent (tritonclient sends none) or
``application/json``; anything else is 415.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeserve.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PipeserveError,
    UnsupportedMediaType,
)
from pipeserve.serving.dataplane import DataPlane
from pipeserve.serving.rest_codec import (
    JSON,
    dumps,
    encode_infer_response,
    error_body,
    loads,
    parse_infer_request,
    predict_v1,
)

if TYPE_CHECKING:
    from pipeserve.serving.metrics import Metrics

log = logging.getLogger("pipeserve.serve")
access_log = logging.getLogger("pipeserve.access")

Headers = list[tuple[bytes, bytes]]
#: What a route handler answers: status, body, and headers (None: the JSON Content-Type).
Response = tuple[int, bytes, Headers | None]

_JSON_HEADERS: Headers = [(b"content-type", JSON)]
_GET = ("GET", "HEAD")
_POST = ("POST",)
_ANY: tuple[str, ...] = ()
V2_MODELS = "/v2/models/"
V1_MODELS = "/v1/models/"
_V1_PREDICT = ":predict"
# The last segment of a v2 model path -> its route.
_V2_ACTIONS = {"infer": "infer", "ready": "model_ready"}


class ModelPath(NamedTuple):
    """A model route's path, taken apart.

    Args:
        name: The model name as written in the path (maybe not a served model).
        version: The version segment, or None when the path has none.
        action: The route, also the metric's route label: ``metadata``, ``infer``,
            ``model_ready``, ``v1_metadata``, ``v1_predict``, or ``unknown`` (no such route).
    """

    name: str
    version: str | None
    action: str


def parse_model_path(path: str) -> ModelPath | None:
    """Take ``/v2/models/NAME[/versions/V][/infer|/ready]`` or ``/v1/models/NAME[:predict]`` apart.

    Returns:
        The parts, or None when ``path`` is not under a model prefix (or is a v1 path with an
        extra segment).

    Raises:
        NotFound: The path names a version but leaves it empty.
    """
    if path.startswith(V2_MODELS):
        name, *rest = path[len(V2_MODELS):].split("/")
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
            if not version:
                raise NotFound(f"No route {path}: the version is empty.")
        if not rest:
            return ModelPath(name, version, "metadata")
        action = _V2_ACTIONS.get(rest[0], "unknown") if len(rest) == 1 else "unknown"
        return ModelPath(name, version, action)
    if path.startswith(V1_MODELS):
        rest = path[len(V1_MODELS):]
        if rest.endswith(_V1_PREDICT):
            return ModelPath(rest[: -len(_V1_PREDICT)], None, "v1_predict")
        if "/" not in rest and ":" not in rest:
            return ModelPath(rest, None, "v1_metadata")
    return None


#: The path of a request to a fixed route (no model in it).
_NO_MODEL = ModelPath("", None, "")

Handler = Callable[[dict[str, Any], Any, ModelPath], Awaitable[Response]]


class _Route(NamedTuple):
    label: str  # the metric's route label
    methods: tuple[str, ...]  # empty: the handler answers any method
    handler: Handler


class RouteMethodNotAllowed(MethodNotAllowed):
    """405 that knows which methods the route takes (for the Allow header)."""

    def __init__(self, path: str, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{path} accepts {' or '.join(allowed)}; got {method}.")
        self.allow = ", ".join(allowed)


class _Disconnected(Exception):
    """The client went away while sending its body; nothing to answer."""


class RestApp:
    """The ASGI application.

    Args:
        dataplane: The data plane every route calls.
        metrics: The server's metrics, or None for no metrics (``/metrics`` then answers 404).
        max_request_bytes: Bodies larger than this get 413, checked on Content-Length before reading.
        access_log: Log one line per request.
    """

    def __init__(
        self, dataplane: DataPlane, metrics: Metrics | None, max_request_bytes: int, access_log: bool = False
    ) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.access_log = access_log
        models = dataplane.models
        self._live = dumps({"live": True})
        self._ready = dumps({"ready": True})
        self._not_ready = dumps({"ready": False})
        self._server_meta = dumps(dataplane.server_metadata)
        self._models_index = dumps({"models": sorted(models)})
        self._model_meta = {name: dumps(m.metadata) for name, m in models.items()}
        self._model_ready = {name: dumps({"name": name, "ready": True}) for name in models}
        self._model_not_ready = {name: dumps({"name": name, "ready": False}) for name in models}
        server_metadata = _Route("server_metadata", _GET, self._get_server_metadata)
        self._routes: dict[str, _Route] = {
            "/v2/health/live": _Route("live", _GET, self._get_live),
            "/v2/health/ready": _Route("ready", _GET, self._get_ready),
            "/v2": server_metadata,
            "/v2/": server_metadata,
            "/v2/models": _Route("models", _GET, self._get_models),
            "/metrics": _Route("metrics", _GET, self._get_metrics),
        }
        # ModelPath.action -> route.
        self._model_routes: dict[str, _Route] = {
            "metadata": _Route("metadata", _GET, self._get_model_metadata),
            "infer": _Route("infer", _POST, self._post_infer),
            "model_ready": _Route("model_ready", _GET, self._get_model_ready),
            "v1_metadata": _Route("v1_metadata", _GET, self._get_v1_metadata),
            "v1_predict": _Route("v1_predict", _POST, self._post_v1_predict),
            "unknown": _Route("unknown", _ANY, self._no_route),
        }
        self._unknown = self._model_routes["unknown"]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        start = time.perf_counter()
        model, route = "", "unknown"  # the metric's labels, as far as the request got
        extra_headers: Headers | None = None
        try:
            matched, target = self._match(scope["path"])
            route = matched.label
            if target.name in self.dataplane.models:
                model = target.name
            if matched.methods and scope["method"] not in matched.methods:
                raise RouteMethodNotAllowed(scope["path"], scope["method"], matched.methods)
            status, body, extra_headers = await matched.handler(scope, receive, target)
        except _Disconnected:
            return
        except PipeserveError as exc:
            status, body = int(exc.status_code), error_body(exc.message)
            if isinstance(exc, RouteMethodNotAllowed):
                extra_headers = [*_JSON_HEADERS, (b"allow", exc.allow.encode())]
        except Exception as exc:  # a bug of ours: answer 500, keep the connection, log the traceback
            log.exception("Unhandled error on %s %s", scope["method"], scope["path"])
            status, body = 500, error_body(f"Internal server error ({type(exc).__name__}); see the server log.")
        headers = [(b"content-length", str(len(body)).encode())]
        headers += _JSON_HEADERS if extra_headers is None else extra_headers
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self.metrics is not None:
            self.metrics.observe(model, route, status, time.perf_counter() - start)
        if self.access_log:
            access_log.info(
                '%s "%s %s" %d %.2fms', (scope.get("client") or ("-",))[0], scope["method"], scope["path"],
                status, (time.perf_counter() - start) * 1000,
            )

    def _match(self, path: str) -> tuple[_Route, ModelPath]:
        route = self._routes.get(path)
        if route is not None:
            return route, _NO_MODEL
        target = parse_model_path(path)
        if target is None:
            return self._unknown, _NO_MODEL
        return self._model_routes[target.action], target

    # --- handlers: (scope, receive, model path) -> (status, body, headers) ---------------------

    async def _no_route(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        raise NotFound(
            f"No route {scope['method']} {scope['path']}. Routes: GET /v2, /v2/health/live, /v2/health/ready, "
            "/v2/models/NAME[/versions/V][/ready], POST /v2/models/NAME[/versions/V]/infer, "
            "POST /v1/models/NAME:predict, GET /metrics."
        )

    async def _get_live(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        return 200, self._live, None

    async def _get_ready(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        return (200, self._ready, None) if self.dataplane.ready else (503, self._not_ready, None)

    async def _get_server_metadata(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        return 200, self._server_meta, None

    async def _get_models(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        return 200, self._models_index, None

    async def _get_metrics(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        if self.metrics is None:
            raise NotFound("Metrics are disabled on this server.")
        return 200, self.metrics.render(), [(b"content-type", self.metrics.content_type.encode())]

    async def _get_model_metadata(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        self.dataplane.model(target.name, target.version)
        return 200, self._model_meta[target.name], None

    async def _get_model_ready(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        if self.dataplane.model_ready(target.name, target.version):
            return 200, self._model_ready[target.name], None
        return 503, self._model_not_ready[target.name], None

    async def _get_v1_metadata(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        self.dataplane.model(target.name)
        return 200, self._model_ready[target.name], None  # KServe's v1 metadata: name and readiness

    async def _post_infer(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        content_type, content_length, header_length = _request_headers(scope["headers"])
        if header_length is None:
            _require_json(content_type)
        self.dataplane.model(target.name, target.version)
        body = await self._read_body(receive, content_length)
        request = parse_infer_request(body, header_length)
        response = await self.dataplane.infer(target.name, target.version, request)
        return (200, *encode_infer_response(response))

    async def _post_v1_predict(self, scope: dict[str, Any], receive: Any, target: ModelPath) -> Response:
        content_type, content_length, _ = _request_headers(scope["headers"])
        _require_json(content_type)
        self.dataplane.model(target.name)
        body = await self._read_body(receive, content_length)
        predictions = await predict_v1(self.dataplane, target.name, loads(body))
        return 200, dumps({"predictions": predictions}), None

    async def _read_body(self, receive: Any, content_length: int | None) -> bytes:
        limit = self.max_request_bytes
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(
                f"Request body must be at most {limit} bytes (--max-request-bytes); got Content-Length "
                f"{content_length}. Send fewer rows per request."
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
                    f"Request body must be at most {limit} bytes (--max-request-bytes); got more. "
                    "Send fewer rows per request."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _request_headers(headers: Headers) -> tuple[bytes | None, int | None, int | None]:
    """(Content-Type, Content-Length, Inference-Header-Content-Length) of a request."""
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
