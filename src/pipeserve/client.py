"""A small client for any Open Inference Protocol (v2) server: pipeserve, KServe, Triton, MLServer.

It is a thin layer over tritonclient's real v2 clients (REST, with or without the binary tensor
extension, and gRPC; see :mod:`pipeserve.transports`) that adds what a scikit-learn user wants:

* rows in, numpy arrays out: :meth:`Predictor.predict` returns the model's primary output (the
  first output the server advertises: ``label`` for pipeserve classifiers, ``prediction`` for
  regressors), :meth:`Predictor.infer` returns every output by name;
* the input name, datatype and shape come from the server's model metadata, and rows that do not
  fit are refused here with a clear message before anything is sent;
* every failure is a :mod:`pipeserve.errors` error carrying the server's own message, so the CLI
  prints one line and exits with the right code.

The protocol is a *transport* behind one interface, as in httpx: :class:`Predictor` shapes rows
and reads metadata, a transport (REST or gRPC, chosen from the URL and the ``grpc`` flag, or
passed in) moves them and turns its library's failures into pipeserve errors.

Example::

    from pipeserve.client import Predictor

    with Predictor("http://127.0.0.1:8080", "iris") as iris:
        iris.predict([[5.1, 3.5, 1.4, 0.2]])          # array([0])
        iris.infer([[5.1, 3.5, 1.4, 0.2]])["probabilities"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeserve.errors import InvalidInput, PipeserveError, ServerUnreachable, UserError
from pipeserve.transports import (
    DEFAULT_TIMEOUT,
    Arrays,
    GrpcTransport,
    ModelMetadata,
    RestTransport,
    TensorMetadata,
    Transport,
)

__all__ = [
    "GrpcTransport", "ModelMetadata", "Predictor", "RestTransport", "ServerUnreachable", "TensorMetadata", "Transport",
]

# KServe's convention for the input of a model that advertises no signature (get_predict_input
# takes the first input whatever its name).
FALLBACK_INPUT = "input-0"


class Predictor:
    """Send rows to a model on a v2 inference server and get numpy arrays back.

    Constructing a Predictor does no I/O; the model metadata is fetched on first use and cached.

    Args:
        url: Server address: ``http://HOST:PORT`` (REST) or ``HOST:PORT`` / ``grpc://HOST:PORT``
            (gRPC). ``https://`` and ``grpcs://`` enable TLS.
        model: Model name. ``None`` picks the only model the server lists (an error if it lists
            none or several, or cannot list its models).
        grpc: Use the gRPC v2 protocol instead of REST (implied by a ``grpc://`` URL).
        binary: Over REST, send inputs and receive outputs with the binary tensor extension
            instead of JSON (much faster for large batches). gRPC is always binary.
        timeout: Seconds to wait for connecting and for each response.
        version: Model version; empty for the server's default.
        transport: Talk to the server through this :class:`Transport` instead of the one
            ``url``, ``grpc`` and ``binary`` choose (tests pass a fake one).
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
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.version = version
        if transport is None:
            grpc = grpc or url.startswith(("grpc://", "grpcs://"))
            transport = GrpcTransport(url, timeout) if grpc else RestTransport(url, timeout, binary)
        self.transport: Transport = transport
        self._model = model
        self._metadata: ModelMetadata | None = None

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection(s)."""
        self.transport.close()

    # -- health and metadata ------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model name, discovered from the server when none was given."""
        if self._model is None:
            names = self.transport.list_models()
            if len(names) != 1:
                found = ", ".join(names) if names else "none"
                raise UserError(
                    f"The server at {self.url} serves {len(names)} models ({found}); "
                    "pass the model name (Predictor(url, model=...) or `pipeserve predict NAME`)."
                )
            self._model = names[0]
        return self._model

    def live(self) -> bool:
        """Whether the server answers its liveness probe (False when unreachable)."""
        try:
            return self.transport.live()
        except PipeserveError:
            return False

    def ready(self) -> bool:
        """Whether the server is ready and the model is ready (False when unreachable or unknown)."""
        try:
            return self.transport.ready(self.model, self.version)
        except PipeserveError:
            return False

    def metadata(self, refresh: bool = False) -> ModelMetadata:
        """Return the model's metadata (cached after the first call).

        Raises:
            NotFound: The server has no such model.
            ServerUnreachable: The server cannot be reached.
        """
        if self._metadata is None or refresh:
            self._metadata = self.transport.metadata(self.model, self.version)
        return self._metadata

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
        arrays = _to_arrays(rows, meta)
        names = list(outputs) if outputs is not None else [o.name for o in meta.outputs]
        return self.transport.infer(self.model, self.version, arrays, names)


# -- input shaping -------------------------------------------------------------------------------


def _to_arrays(rows: Any, meta: ModelMetadata) -> Arrays:
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
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=False)):
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


