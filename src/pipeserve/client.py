"""A small client for any Open Inference Protocol (v2) server: pipeserve, KServe, Triton, MLServer.

It is a thin layer over tritonclient's real v2 clients (HTTP, with or without the binary tensor
extension, and gRPC) that adds what a scikit-learn user wants:

* rows in, numpy arrays out: :meth:`Predictor.predict` returns the model's primary output (the
  first output the server advertises: ``label`` for pipeserve classifiers, ``prediction`` for
  regressors), :meth:`Predictor.infer` returns every output by name;
* the input name, datatype and shape come from the server's model metadata, and rows that do not
  fit are refused here with a clear message before anything is sent;
* every failure is a :mod:`pipeserve.errors` error carrying the server's own message, so the CLI
  prints one line and exits with the right code.

Example::

    from pipeserve.client import Predictor

    with Predictor("http://127.0.0.1:8080", "iris") as iris:
        iris.predict([[5.1, 3.5, 1.4, 0.2]])          # array([0])
        iris.infer([[5.1, 3.5, 1.4, 0.2]])["probabilities"]
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from pipeserve.errors import (
    InferenceError,
    InvalidInput,
    MethodNotAllowed,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    PipeserveError,
    UnsupportedMediaType,
    UserError,
)

__all__ = ["ModelMetadata", "Predictor", "ServerUnreachable", "TensorMetadata"]

DEFAULT_TIMEOUT = 30.0
# KServe's convention for the input of a model that advertises no signature (get_predict_input
# takes the first input whatever its name).
FALLBACK_INPUT = "input-0"


class ServerUnreachable(PipeserveError):
    """The server cannot be reached (refused, unknown host, timed out)."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    exit_code = 1


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


def _error_for_status(status: int) -> type[PipeserveError]:
    """The pipeserve error class for an HTTP status the server answered with."""
    by_status: dict[int, type[PipeserveError]] = {
        int(cls.status_code): cls
        for cls in (NotFound, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType, ModelNotReady)
    }
    if status in by_status:
        return by_status[status]
    if status in (400, 422):  # 422: FastAPI-based servers (KServe) reject malformed bodies so
        return InvalidInput
    if 400 <= status < 500:
        return UserError
    return InferenceError


# gRPC status code -> pipeserve error class (UNAVAILABLE: nothing listens, or the connection broke).
_GRPC_ERRORS: dict[str, type[PipeserveError]] = {
    "StatusCode.INVALID_ARGUMENT": InvalidInput,
    "StatusCode.OUT_OF_RANGE": InvalidInput,
    "StatusCode.NOT_FOUND": NotFound,
    "StatusCode.RESOURCE_EXHAUSTED": PayloadTooLarge,
    "StatusCode.FAILED_PRECONDITION": ModelNotReady,
    "StatusCode.UNIMPLEMENTED": NotFound,
    "StatusCode.UNAVAILABLE": ServerUnreachable,
    "StatusCode.DEADLINE_EXCEEDED": ServerUnreachable,
}


# What gRPC itself says when no server answers (as opposed to a server answering UNAVAILABLE).
_TRANSPORT_FAILURE = re.compile(
    r"failed to connect|connection refused|connect failed|socket closed|dns resolution|"
    r"connection reset|name resolution|no route|unreachable", re.IGNORECASE)


class Predictor:
    """Send rows to a model on a v2 inference server and get numpy arrays back.

    Constructing a Predictor does no I/O; the model metadata is fetched on first use and cached.

    Args:
        url: Server address: ``http://HOST:PORT`` (REST) or ``HOST:PORT`` / ``grpc://HOST:PORT``
            (gRPC). ``https://`` enables TLS for REST.
        model: Model name. ``None`` picks the only model the server lists (an error if it lists
            none or several, or cannot list its models).
        grpc: Use the gRPC v2 protocol instead of REST.
        binary: Over REST, send inputs and receive outputs with the binary tensor extension
            instead of JSON (much faster for large batches). gRPC is always binary.
        timeout: Seconds to wait for connecting and for each response.
        version: Model version; empty for the server's default.
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        grpc: bool = False,
        binary: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        version: str = "",
    ) -> None:
        self.url = url
        self.grpc = grpc
        self.binary = binary
        self.timeout = timeout
        self.version = version
        self._address, self._ssl = _split_url(url, grpc)
        self._model = model
        self._metadata: ModelMetadata | None = None
        self._client: Any = None

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection(s)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _conn(self) -> Any:
        if self._client is None:
            if self.grpc:
                from pipeserve._protos import share_inference_protos

                share_inference_protos()  # kserve and tritonclient.grpc in one process
                import tritonclient.grpc as grpcclient

                self._client = grpcclient.InferenceServerClient(self._address, ssl=self._ssl)
            else:
                import tritonclient.http as httpclient

                self._client = httpclient.InferenceServerClient(
                    self._address,
                    ssl=self._ssl,
                    connection_timeout=self.timeout,
                    network_timeout=self.timeout,
                )
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one tritonclient call, turning its failures into pipeserve errors."""
        import http.client

        from tritonclient.utils import InferenceServerException

        if self.grpc:
            kwargs.setdefault("client_timeout", self.timeout)
        try:
            try:
                return fn(*args, **kwargs)
            except http.client.HTTPException:
                # A pooled keep-alive connection the server closed meanwhile (KServe closes it
                # after any 500): v2 calls have no side effects, so one retry on a fresh one.
                return fn(*args, **kwargs)
        except InferenceServerException as exc:
            raise self._server_error(what, exc) from exc
        except (OSError, TimeoutError) as exc:  # refused, reset, DNS, socket timeout
            raise ServerUnreachable(
                f"Cannot reach the v2 server at {self.url} ({what}): {exc or type(exc).__name__}. "
                "Check the URL and that the server is running (`pipeserve serve MODEL_DIR`)."
            ) from exc
        except http.client.HTTPException as exc:
            raise ServerUnreachable(
                f"The v2 server at {self.url} closed the connection during {what} ({exc}). "
                "Check that it is a v2 inference server and that it is healthy."
            ) from exc
        except Exception as exc:  # gevent.Timeout is not an OSError
            if type(exc).__name__ == "Timeout":
                raise ServerUnreachable(
                    f"The v2 server at {self.url} did not answer {what} within {self.timeout:g} s."
                ) from exc
            raise

    def _server_error(self, what: str, exc: Any) -> PipeserveError:
        status = str(exc.status() or "")
        message = exc.message() or "no message"
        if self.grpc:
            cls = _GRPC_ERRORS.get(status, InferenceError)
            if status == "StatusCode.UNAVAILABLE" and not _TRANSPORT_FAILURE.search(message):
                # UNAVAILABLE sent by a live server (loading or draining), not a failed connection.
                cls = ModelNotReady
            if cls is ServerUnreachable:
                return ServerUnreachable(
                    f"Cannot reach the v2 gRPC server at {self.url} ({what}): {message} "
                    f"[{status}]. Check the address and that the server is running."
                )
            return cls(f"{message} [{status} from {self.url}, {what}]")
        code = int(status) if status.isdigit() else 500
        return _error_for_status(code)(f"{message} [HTTP {code} from {self.url}, {what}]")

    # -- health and metadata ------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model name, discovered from the server when none was given."""
        if self._model is None:
            self._model = self._discover_model()
        return self._model

    def live(self) -> bool:
        """Whether the server answers its liveness probe (False when unreachable)."""
        try:
            return bool(self._call("live", self._conn().is_server_live))
        except PipeserveError:
            return False

    def ready(self) -> bool:
        """Whether the server is ready and the model is ready (False when unreachable or unknown)."""
        try:
            conn = self._conn()
            return bool(
                self._call("ready", conn.is_server_ready)
                and self._call("model ready", conn.is_model_ready, self.model, self.version)
            )
        except PipeserveError:
            return False

    def metadata(self, refresh: bool = False) -> ModelMetadata:
        """Return the model's metadata (cached after the first call).

        Raises:
            NotFound: The server has no such model.
            ServerUnreachable: The server cannot be reached.
        """
        if self._metadata is None or refresh:
            raw = self._call(
                "model metadata", self._conn().get_model_metadata, self.model, self.version
            )
            self._metadata = _grpc_metadata(raw) if self.grpc else _rest_metadata(raw)
        return self._metadata

    def _discover_model(self) -> str:
        names = self._list_models()
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise UserError(
                f"The server at {self.url} serves {len(names)} models ({found}); "
                "pass the model name (Predictor(url, model=...) or `pipeserve predict NAME`)."
            )
        return names[0]

    def _list_models(self) -> list[str]:
        # Triton and pipeserve: the repository index extension. KServe: GET /v2/models.
        try:
            index = self._call("model index", self._conn().get_model_repository_index)
        except (NotFound, MethodNotAllowed, UserError, InferenceError) as first:
            if self.grpc:
                raise UserError(
                    f"The gRPC server at {self.url} cannot list its models ({first}); "
                    "pass the model name."
                ) from first
            return self._list_models_kserve(first)
        if self.grpc:
            return sorted({m.name for m in index.models})
        return sorted({m["name"] for m in index})

    def _list_models_kserve(self, first: PipeserveError) -> list[str]:
        scheme = "https" if self._ssl else "http"
        try:
            with urllib.request.urlopen(
                f"{scheme}://{self._address}/v2/models", timeout=self.timeout
            ) as resp:
                return sorted(json.loads(resp.read())["models"])
        except (urllib.error.URLError, KeyError, ValueError, TypeError) as exc:
            raise UserError(
                f"The server at {self.url} cannot list its models ({first}); pass the model name."
            ) from exc

    # -- inference ----------------------------------------------------------------------------

    def predict(self, rows: Any) -> np.ndarray:
        """Predict: return the model's primary output for ``rows``.

        The primary output is the first output in the model metadata (``label`` for pipeserve
        classifiers, ``prediction`` for regressors), or the first output of the response when
        the server advertises none.

        Args:
            rows: A 2-D array-like ``[n_rows, n_features]`` (a 1-D one is one row), or a mapping
                of input name to array for models with several inputs.

        Returns:
            A numpy array with one entry (or row) per input row (string labels as ``str``).
        """
        outputs = self.infer(rows)
        return next(iter(outputs.values()))

    def infer(self, rows: Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run inference and return every requested output by name, in the server's order.

        Args:
            rows: As for :meth:`predict`.
            outputs: Output names to request (default: every output the model advertises).

        Raises:
            InvalidInput: The rows do not fit the model's inputs (checked here before sending,
                and by the server).
            NotFound: Unknown model, version or output.
            ServerUnreachable: The server cannot be reached.
        """
        meta = self.metadata()
        arrays = self._to_arrays(rows, meta)
        lib = self._lib()
        infer_inputs = []
        for name, (datatype, array) in arrays.items():
            tensor = lib.InferInput(name, list(array.shape), datatype)
            if self.grpc:
                tensor.set_data_from_numpy(array)
            else:
                if not self.binary:
                    _check_json_safe(array, name)
                tensor.set_data_from_numpy(array, binary_data=self.binary)
            infer_inputs.append(tensor)
        names = list(outputs) if outputs is not None else [o.name for o in meta.outputs]
        requested = [self._requested(lib, name) for name in names] or None
        kwargs: dict[str, Any] = {"outputs": requested, "model_version": self.version}
        if not self.grpc:
            # tritonclient sends no Content-Type; KServe then reads a JSON body as binary.
            content_type = "application/octet-stream" if self.binary else "application/json"
            kwargs["headers"] = {"Content-Type": content_type}
        result = self._call("infer", self._conn().infer, self.model, infer_inputs, **kwargs)
        response = result.get_response()
        got = [o.name for o in response.outputs] if self.grpc else [
            o["name"] for o in response.get("outputs", [])
        ]
        return {name: _decode_bytes(result.as_numpy(name)) for name in got}

    def _lib(self) -> Any:
        if self.grpc:
            from pipeserve._protos import share_inference_protos

            share_inference_protos()  # kserve and tritonclient.grpc in one process
            import tritonclient.grpc as lib
        else:
            import tritonclient.http as lib
        return lib

    def _requested(self, lib: Any, name: str) -> Any:
        if self.grpc:
            return lib.InferRequestedOutput(name)
        return lib.InferRequestedOutput(name, binary_data=self.binary)

    def _to_arrays(self, rows: Any, meta: ModelMetadata) -> dict[str, tuple[str, np.ndarray]]:
        """Shape and type ``rows`` for the model's inputs; refuse what cannot fit."""
        specs = meta.inputs
        if not specs:
            # The server advertises no signature (KServe's sklearnserver): send FP32 [N, F].
            array = _as_batch(rows, FALLBACK_INPUT, ndim=2)
            spec = TensorMetadata(FALLBACK_INPUT, "FP32", (-1, array.shape[-1]))
            return {spec.name: (spec.datatype, _cast(array, spec, meta.name))}
        if isinstance(rows, Mapping):
            unknown = sorted(set(rows) - {s.name for s in specs})
            missing = [s.name for s in specs if s.name not in rows]
            if unknown or missing:
                raise InvalidInput(
                    f"Model {meta.name!r} takes inputs {[s.name for s in specs]}; "
                    f"got {sorted(rows)} (unknown: {unknown}, missing: {missing})."
                )
            return {s.name: (s.datatype, _fit(rows[s.name], s, meta.name)) for s in specs}
        if len(specs) > 1:
            raise InvalidInput(
                f"Model {meta.name!r} takes {len(specs)} inputs {[s.name for s in specs]}; "
                "pass a mapping of input name to rows."
            )
        spec = specs[0]
        return {spec.name: (spec.datatype, _fit(rows, spec, meta.name))}


def _as_batch(rows: Any, name: str, ndim: int) -> np.ndarray:
    """``rows`` as an ndarray with ``ndim`` dimensions (a missing batch axis is added)."""
    try:
        array = rows if isinstance(rows, np.ndarray) else np.asarray(rows)
    except ValueError as exc:  # ragged lists
        raise InvalidInput(
            f"Input {name!r}: rows must be a rectangular array (every row the same length); {exc}."
        ) from exc
    if array.size == 0:
        raise InvalidInput(f"Input {name!r} expects a non-empty batch of rows; got shape {list(array.shape)}.")
    if array.ndim == ndim - 1:
        array = array[np.newaxis, ...]
    if array.ndim != ndim:
        raise InvalidInput(
            f"Input {name!r} expects a {ndim}-D batch of rows; got shape {list(array.shape)}."
        )
    return array


def _fit(rows: Any, spec: TensorMetadata, model: str) -> np.ndarray:
    """Check ``rows`` against the advertised shape and cast them to its datatype."""
    array = _as_batch(rows, spec.name, ndim=max(len(spec.shape), 1))
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
        if want >= 0 and want != got and axis > 0:
            expected = ", ".join("N" if d < 0 else str(d) for d in spec.shape)
            raise InvalidInput(
                f"Model {model!r} input {spec.name!r} expects rows of shape [{expected}] "
                f"({spec.datatype}); got shape {list(array.shape)}. Send "
                f"{spec.shape[-1]} features per row."
            )
    return _cast(array, spec, model)


def _cast(array: np.ndarray, spec: TensorMetadata, model: str) -> np.ndarray:
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(spec.datatype)
    if dtype is None:
        raise InvalidInput(f"Model {model!r} input {spec.name!r} has unknown datatype {spec.datatype!r}.")
    if dtype is np.object_:
        return array.astype(np.object_)
    if array.dtype.kind in "OUS":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"Model {model!r} input {spec.name!r} takes numbers ({spec.datatype}); got "
                f"non-numeric values ({exc})."
            ) from exc
    if np.dtype(dtype).kind in "iub" and array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InvalidInput(
                f"Model {model!r} input {spec.name!r} takes integers ({spec.datatype}); "
                "got fractional or non-finite values."
            )
    return np.ascontiguousarray(array, dtype=dtype)


def _decode_bytes(array: np.ndarray) -> np.ndarray:
    """BYTES tensors come back as bytes (binary, gRPC) or str (JSON): always return str."""
    if array.dtype == np.object_ and array.size and isinstance(array.flat[0], bytes):
        return np.array([v.decode("utf-8") for v in array.ravel()], dtype=np.object_).reshape(array.shape)
    return array


def _check_json_safe(array: np.ndarray, name: str) -> None:
    """JSON has no NaN or Infinity: refuse them instead of sending an invalid body."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(
            f"Input {name!r} holds NaN or infinite values, which JSON cannot carry. Send them with "
            "the binary tensor extension (binary=True, `--binary`) or over gRPC."
        )


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
