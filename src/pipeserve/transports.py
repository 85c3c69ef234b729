"""Transports of :class:`pipeserve.client.Predictor`: how rows travel to a v2 server and back.

A transport speaks one protocol through tritonclient's real v2 clients and turns that library's
failures into :mod:`pipeserve.errors` errors, reading the status a server answered with through
the maps in :mod:`pipeserve.errors`. :class:`RestTransport` sends JSON tensors, or binary ones
(the binary tensor extension); :class:`GrpcTransport` always sends raw bytes. Anything with the
methods of :class:`Transport` can stand in for them (a fake one in a test, say), as in httpx.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from pipeserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotReady,
    PipeserveError,
    ServerUnreachable,
    UserError,
    error_for_grpc_code,
    error_for_http_status,
)

__all__ = ["Arrays", "GrpcTransport", "ModelMetadata", "RestTransport", "TensorMetadata", "Transport"]

DEFAULT_TIMEOUT = 30.0

#: Input name -> (v2 datatype, array shaped and cast for it): what a transport sends.
Arrays = dict[str, tuple[str, np.ndarray]]


@dataclass(frozen=True)
class TensorMetadata:
    """One input or output as the server advertises it.

    Args:
        name: Tensor name on the wire.
        datatype: v2 datatype, e.g. ``FP32``.
        shape: Shape with ``-1`` for variable dimensions.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """The answer to ``GET /v2/models/{name}`` (or gRPC ``ModelMetadata``).

    Args:
        name: Model name.
        platform: Server-defined platform string (may be empty).
        versions: Versions the server offers (may be empty).
        inputs: Input tensors (empty when the server does not advertise them, e.g. KServe's
            sklearnserver).
        outputs: Output tensors (may be empty too).
        parameters: Extra metadata (pipeserve puts the model card's lineage here).
    """

    name: str
    platform: str
    versions: tuple[str, ...]
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    parameters: dict[str, Any] = field(default_factory=dict)


class Transport(Protocol):
    """How a :class:`Predictor` talks to a server. Every method raises pipeserve errors only."""

    url: str

    def live(self) -> bool:
        """Whether the server answers its liveness probe."""

    def ready(self, model: str, version: str) -> bool:
        """Whether the server and the model are ready."""

    def metadata(self, model: str, version: str) -> ModelMetadata:
        """The model's metadata."""

    def list_models(self) -> list[str]:
        """The names of the models the server serves, sorted."""

    def infer(self, model: str, version: str, inputs: Arrays, outputs: list[str]) -> dict[str, np.ndarray]:
        """Send ``inputs``, ask for ``outputs`` (all when empty), return what came back by name."""

    def close(self) -> None:
        """Close the connection(s)."""


def _split_url(url: str, grpc: bool) -> tuple[str, bool]:
    """Return (``host:port[/prefix]`` for tritonclient, ssl?) from a URL with or without scheme."""
    if "://" not in url:
        url = ("grpc://" if grpc else "http://") + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "grpc", "grpcs") or not parts.hostname:
        raise UserError(
            f"Server URL must look like http://HOST:PORT (or HOST:PORT for gRPC); got {url!r}."
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise UserError(f"Server URL {url!r} has an invalid port.") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 8081 if grpc else (443 if parts.scheme == "https" else 80)
    address = f"{host}:{port or default_port}"
    if not grpc and parts.path.strip("/"):
        address += "/" + parts.path.strip("/")
    return address, parts.scheme in ("https", "grpcs")


# What gRPC itself says when no server answers (as opposed to a server answering UNAVAILABLE).
_TRANSPORT_FAILURE = re.compile(
    r"failed to connect|connection refused|connect failed|socket closed|dns resolution|"
    r"connection reset|name resolution|no route|unreachable", re.IGNORECASE)


class _TritonTransport:
    """What both transports share: one lazily opened tritonclient client and its error handling."""

    def __init__(self, url: str, address: str, ssl: bool, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._address = address
        self._ssl = ssl
        self._client: Any = None

    def _open(self) -> Any:
        raise NotImplementedError

    def _conn(self) -> Any:
        if self._client is None:
            self._client = self._open()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def error(self, what: str, exc: Any) -> PipeserveError:
        """The pipeserve error for a tritonclient ``InferenceServerException`` raised during ``what``."""
        raise NotImplementedError

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one tritonclient call, turning its failures into pipeserve errors."""
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            raise self.error(what, exc) from exc
        except OSError as exc:  # refused, reset, DNS, socket timeout
            raise ServerUnreachable(
                f"Cannot reach the v2 server at {self.url} ({what}): {exc or type(exc).__name__}. "
                "Check the URL and that the server is running (`pipeserve serve MODEL_DIR`)."
            ) from exc

    def live(self) -> bool:
        return bool(self._call("live", self._conn().is_server_live))

    def ready(self, model: str, version: str) -> bool:
        conn = self._conn()
        return bool(
            self._call("ready", conn.is_server_ready)
            and self._call("model ready", conn.is_model_ready, model, version)
        )


class RestTransport(_TritonTransport):
    """REST (HTTP/1.1) through ``tritonclient.http``; JSON tensors, or binary ones with ``binary``.

    Args:
        url: ``http://HOST:PORT[/prefix]`` or ``https://…``.
        timeout: Seconds to wait for connecting and for each response.
        binary: Send inputs and receive outputs with the binary tensor extension.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, binary: bool = False) -> None:
        super().__init__(url, *_split_url(url, grpc=False), timeout)
        self.binary = binary

    def _open(self) -> Any:
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(
            self._address, ssl=self._ssl, connection_timeout=self.timeout, network_timeout=self.timeout
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import http.client

        import gevent  # tritonclient.http runs on geventhttpclient

        try:
            try:
                return super()._call(what, fn, *args, **kwargs)
            except http.client.HTTPException:
                # A pooled keep-alive connection the server closed meanwhile (KServe closes it
                # after any 500): v2 calls have no side effects, so one retry on a fresh one.
                return super()._call(what, fn, *args, **kwargs)
        except http.client.HTTPException as exc:
            raise ServerUnreachable(
                f"The v2 server at {self.url} closed the connection during {what} ({exc}). "
                "Check that it is a v2 inference server and that it is healthy."
            ) from exc
        except gevent.Timeout as exc:  # a BaseException, not an OSError
            raise ServerUnreachable(
                f"The v2 server at {self.url} did not answer {what} within {self.timeout:g} s."
            ) from exc

    def error(self, what: str, exc: Any) -> PipeserveError:
        status = str(exc.status() or "")
        message = exc.message() or "no message"
        code = int(status) if status.isdigit() else 500
        return error_for_http_status(code)(f"{message} [HTTP {code} from {self.url}, {what}]")

    def metadata(self, model: str, version: str) -> ModelMetadata:
        return _rest_metadata(self._call("model metadata", self._conn().get_model_metadata, model, version))

    def list_models(self) -> list[str]:
        # Triton and pipeserve: the repository index extension. KServe: GET /v2/models.
        try:
            index = self._call("model index", self._conn().get_model_repository_index)
        except (UserError, InferenceError) as first:
            return self._list_models_kserve(first)
        return sorted({m["name"] for m in index})

    def _list_models_kserve(self, first: PipeserveError) -> list[str]:
        scheme = "https" if self._ssl else "http"
        try:
            with urllib.request.urlopen(f"{scheme}://{self._address}/v2/models", timeout=self.timeout) as resp:
                return sorted(json.loads(resp.read())["models"])
        except (urllib.error.URLError, KeyError, ValueError, TypeError) as exc:
            raise UserError(
                f"The server at {self.url} cannot list its models ({first}); pass the model name."
            ) from exc

    def infer(self, model: str, version: str, inputs: Arrays, outputs: list[str]) -> dict[str, np.ndarray]:
        import tritonclient.http as httpclient

        tensors = []
        for name, (datatype, array) in inputs.items():
            if not self.binary:
                _check_json_safe(array, name)
            tensor = httpclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=self.binary)
            tensors.append(tensor)
        requested = [httpclient.InferRequestedOutput(name, binary_data=self.binary) for name in outputs] or None
        # tritonclient sends no Content-Type; KServe then reads a JSON body as binary.
        headers = {"Content-Type": "application/octet-stream" if self.binary else "application/json"}
        result = self._call("infer", self._conn().infer, model, tensors, outputs=requested, model_version=version,
                            headers=headers)
        names = [o["name"] for o in result.get_response().get("outputs", [])]
        return {name: _decode_bytes(result.as_numpy(name)) for name in names}


class GrpcTransport(_TritonTransport):
    """gRPC through ``tritonclient.grpc`` (tensors always travel as raw bytes).

    Args:
        url: ``HOST:PORT``, ``grpc://HOST:PORT`` or ``grpcs://HOST:PORT`` (TLS).
        timeout: Seconds to wait for each call.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, *_split_url(url, grpc=True), timeout)

    def _open(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self._address, ssl=self._ssl)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("client_timeout", self.timeout)
        return super()._call(what, fn, *args, **kwargs)

    def error(self, what: str, exc: Any) -> PipeserveError:
        status = str(exc.status() or "")
        message = exc.message() or "no message"
        cls = error_for_grpc_code(status)
        if cls is ModelNotReady and _TRANSPORT_FAILURE.search(message):
            cls = ServerUnreachable  # gRPC's own UNAVAILABLE: nothing answered
        if cls is ServerUnreachable:
            return ServerUnreachable(
                f"Cannot reach the v2 gRPC server at {self.url} ({what}): {message} "
                f"[{status}]. Check the address and that the server is running."
            )
        return cls(f"{message} [{status} from {self.url}, {what}]")

    def metadata(self, model: str, version: str) -> ModelMetadata:
        return _grpc_metadata(self._call("model metadata", self._conn().get_model_metadata, model, version))

    def list_models(self) -> list[str]:
        try:
            index = self._call("model index", self._conn().get_model_repository_index)
        except (UserError, InferenceError) as first:
            raise UserError(
                f"The gRPC server at {self.url} cannot list its models ({first}); pass the model name."
            ) from first
        return sorted({m.name for m in index.models})

    def infer(self, model: str, version: str, inputs: Arrays, outputs: list[str]) -> dict[str, np.ndarray]:
        import tritonclient.grpc as grpcclient

        tensors = []
        for name, (datatype, array) in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs] or None
        result = self._call("infer", self._conn().infer, model, tensors, outputs=requested, model_version=version)
        names = [o.name for o in result.get_response().outputs]
        return {name: _decode_bytes(result.as_numpy(name)) for name in names}


def _check_json_safe(array: np.ndarray, name: str) -> None:
    """JSON has no NaN or Infinity: refuse them instead of sending an invalid body."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(
            f"Input {name!r} holds NaN or infinite values, which JSON cannot carry. Send them with "
            "the binary tensor extension (binary=True, `--binary`) or over gRPC."
        )


# -- answers -------------------------------------------------------------------------------------


def _decode_bytes(array: np.ndarray) -> np.ndarray:
    """BYTES tensors come back as bytes (binary, gRPC) or str (JSON): always return str."""
    if array.dtype == np.object_ and array.size and isinstance(array.flat[0], bytes):
        return np.array([v.decode("utf-8") for v in array.ravel()], dtype=np.object_).reshape(array.shape)
    return array


def _rest_metadata(raw: Mapping[str, Any]) -> ModelMetadata:
    def tensors(key: str) -> tuple[TensorMetadata, ...]:
        return tuple(
            TensorMetadata(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", [])))
            for t in raw.get(key) or []
        )

    return ModelMetadata(
        name=raw.get("name", ""),
        platform=raw.get("platform") or "",
        versions=tuple(str(v) for v in raw.get("versions") or []),
        inputs=tensors("inputs"),
        outputs=tensors("outputs"),
        parameters=dict(raw.get("parameters") or {}),
    )


def _grpc_metadata(raw: Any) -> ModelMetadata:
    def tensors(items: Any) -> tuple[TensorMetadata, ...]:
        return tuple(TensorMetadata(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in items)

    params = {}
    for key, value in getattr(raw, "parameters", {}).items():
        kind = value.WhichOneof("parameter_choice")
        params[key] = getattr(value, kind) if kind else None
    return ModelMetadata(
        name=raw.name,
        platform=raw.platform,
        versions=tuple(raw.versions),
        inputs=tensors(raw.inputs),
        outputs=tensors(raw.outputs),
        parameters=params,
    )
