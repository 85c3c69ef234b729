"""The protocol-agnostic data plane: model registry, health, metadata, validation and inference.

REST and gRPC both turn their wire format into an :class:`InferenceRequest` whose inputs still
hold undecoded data (a JSON list or raw bytes); the data plane checks every input against the
model card's signature *before* decoding, decodes with :mod:`pipeserve.serving.tensors`, checks
the values, and only then calls the backend. This module imports no web framework and no
protobuf (a test asserts it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeserve import __version__
from pipeserve.errors import ConfigError, InferenceError, InvalidInput, NotFound, PipeserveError
from pipeserve.modelcard import ModelCard, TensorSpec, read_card, verify_files
from pipeserve.serving import tensors
from pipeserve.serving.backends import Backend, open_backend

SERVER_NAME = "pipeserve"
EXTENSIONS = ["binary_tensor_data"]
#: Wire datatypes accepted for an input declared with the key datatype (converted losslessly enough).
ACCEPTED_DATATYPES = {"FP32": ("FP32", "FP64"), "FP64": ("FP64", "FP32")}


@dataclass(slots=True)
class RequestInput:
    """One input tensor as received; ``data`` is a JSON list or raw little-endian bytes."""

    name: str
    datatype: str
    shape: list[int]
    data: Any
    raw: bool = False


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` None means "the request's default"."""

    name: str
    binary: bool | None = None


@dataclass(slots=True)
class InferenceRequest:
    """A protocol-neutral inference request."""

    inputs: list[RequestInput]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    binary_output: bool = False


@dataclass(slots=True)
class ResponseOutput:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    binary: bool = False


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: list[ResponseOutput]
    id: str | None = None


@dataclass
class ServedModel:
    """A verified, loaded model and everything precomputed for its hot path."""

    name: str
    card: ModelCard
    backend: Backend
    load_seconds: float
    input: TensorSpec = field(init=False)
    output_specs: dict[str, TensorSpec] = field(init=False)
    default_outputs: list[RequestedOutput] = field(init=False)
    allow_nan: bool = field(init=False)
    accepted_datatypes: tuple[str, ...] = field(init=False)
    metadata: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        card = self.card
        if len(card.inputs) != 1 or len(card.inputs[0].shape) != 2:
            raise ConfigError(
                f"Model {self.name!r}: expected one 2-D input [-1, n_features] in the model card; "
                f"got {[t.to_dict() for t in card.inputs]}."
            )
        self.input = card.inputs[0]
        self.output_specs = {o.name: o for o in card.outputs}
        self.default_outputs = [RequestedOutput(o.name) for o in card.outputs]
        # The card says whether the estimator takes NaN (pipeserve.training.ACCEPTS_NAN).
        self.allow_nan = bool(card.estimator.get("accepts_nan", False))
        self.accepted_datatypes = ACCEPTED_DATATYPES.get(self.input.datatype, (self.input.datatype,))
        lineage: dict[str, Any] = {
            "task": card.task,
            "estimator": card.estimator.get("class", ""),
            "created_at": card.created_at,
            "data_fingerprint": card.data.get("fingerprint", ""),
            "data_source": str(card.data.get("source", "")),
            **{k: str(v) for k, v in card.lineage.items()},
        }
        self.metadata = {
            "name": self.name,
            "versions": [card.version],
            "platform": self.backend.platform,
            "inputs": [_tensor_meta(self.input)],
            "outputs": [_tensor_meta(o) for o in card.outputs],
            "parameters": lineage,
        }

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def n_features(self) -> int:
        return self.input.shape[-1]


def _tensor_meta(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def load_model(model_dir: Path, name: str | None, backend: str, threads: Callable[[str], int]) -> ServedModel:
    """Verify every file of ``model_dir`` against its card's sha256, then open its backend.

    Raises:
        IntegrityError: A file does not match the card (nothing is loaded).
        IntegrityError: model.skops holds a type outside the allow-list (sklearn backend).
    """
    start = time.perf_counter()
    card = read_card(model_dir)
    verify_files(model_dir, card)
    opened = open_backend(model_dir, card, backend, threads)
    return ServedModel(name or card.name, card, opened, time.perf_counter() - start)


class DataPlane:
    """Health, metadata and inference for a set of loaded models; shared by REST and gRPC.

    Args:
        models: The loaded models.
        inline_rows: Batches up to this size run on the event loop, bigger ones on a thread.
        metrics: Optional :class:`~pipeserve.serving.metrics.Metrics` for rows per request.
    """

    def __init__(self, models: list[ServedModel], inline_rows: int = 4096, metrics: Any = None) -> None:
        self.models = {m.name: m for m in models}
        self.inline_rows = inline_rows
        self.metrics = metrics
        self.shutting_down = False
        self.server_metadata = {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    # --- health and metadata -------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        """All models loaded and the server is not shutting down."""
        return not self.shutting_down

    def begin_shutdown(self) -> None:
        """Readiness goes false; requests keep being answered until the listener closes."""
        self.shutting_down = True

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """Return the model ``name`` (and ``version`` if given) or raise NotFound."""
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"Model {name!r} is not served here; served models: {known}.")
        if version is not None and version != served.version:
            raise NotFound(
                f"Model {name!r} has no version {version!r}; its versions are: {served.version}."
            )
        return served

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self.model(name, version)
        return not self.shutting_down

    # --- inference -----------------------------------------------------------------------------

    def prepare(self, model: ServedModel, request: InferenceRequest) -> tuple[np.ndarray, list[RequestedOutput]]:
        """Check ``request`` against the model's signature and decode it to a float32 matrix.

        Returns:
            The feature matrix and the outputs to compute, in the order to return them.
        """
        spec = model.input
        inputs = request.inputs
        expected = f"one input {spec.name!r} ({spec.datatype} [N, {model.n_features}])"
        if not inputs:
            raise InvalidInput(f"Model {model.name!r} expects {expected}; got no inputs.")
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise InvalidInput(f"Model {model.name!r} expects {expected}; got {len(inputs)} inputs {names}.")
        inp = inputs[0]
        where = f"Input {inp.name!r}"
        if inp.name != spec.name:
            raise InvalidInput(f"Model {model.name!r} expects {expected}; got an input named {inp.name!r}.")
        tensors.check_datatype(inp.datatype, where)
        if inp.datatype not in model.accepted_datatypes:
            raise InvalidInput(
                f"{where} must have datatype {' or '.join(model.accepted_datatypes)}; got {inp.datatype}."
            )
        shape = tensors.check_shape(inp.shape, where)
        if len(shape) != 2 or shape[1] != model.n_features:
            raise InvalidInput(
                f"{where} must have shape [N, {model.n_features}] (N rows of {model.n_features} features); got {shape}."
            )
        if shape[0] == 0:
            raise InvalidInput(f"{where} must have at least one row; got shape {shape}.")
        if inp.raw:
            arr = tensors.array_from_bytes(inp.data, inp.datatype, shape, where)
        else:
            arr = tensors.array_from_json(inp.data, inp.datatype, shape, where)
        if arr.dtype != np.float32:
            with np.errstate(over="ignore"):
                arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            if not model.allow_nan:
                bad = int(np.count_nonzero(~np.isfinite(arr)))
                raise InvalidInput(
                    f"{where} must hold finite numbers (this {model.card.estimator.get('class', 'model')} "
                    f"cannot take NaN or infinity); got {bad} non-finite value(s) (after conversion to FP32)."
                )
            if np.isinf(arr).any():  # NaN means "missing" to this model; infinity is a broken client
                bad = int(np.count_nonzero(np.isinf(arr)))
                raise InvalidInput(
                    f"{where} may hold NaN (missing values) but not infinity; got {bad} infinite value(s) "
                    "(after conversion to FP32)."
                )
        outputs = request.outputs
        if outputs is None:
            return arr, model.default_outputs
        if not outputs:
            raise InvalidInput(
                f"'outputs' must name at least one of {', '.join(model.output_specs)} or be left out; got []."
            )
        for out in outputs:
            if out.name not in model.output_specs:
                raise NotFound(
                    f"Model {model.name!r} has no output {out.name!r}; its outputs are: {', '.join(model.output_specs)}."
                )
        return arr, outputs

    def run(self, model: ServedModel, x: np.ndarray, outputs: list[RequestedOutput], request: InferenceRequest) -> InferenceResponse:
        """Run the backend on a validated matrix (synchronously) and wrap the results."""
        names = [o.name for o in outputs]
        try:
            arrays = model.backend.run(x, names)
        except PipeserveError:
            raise
        except Exception as exc:  # the model itself failed on valid input: a server fault
            raise InferenceError(f"Model {model.name!r} failed on a valid request: {type(exc).__name__}: {exc}") from exc
        default_binary = request.binary_output
        specs = model.output_specs
        result = []
        for out, arr in zip(outputs, arrays, strict=True):
            spec = specs[out.name]
            binary = default_binary if out.binary is None else out.binary
            result.append(ResponseOutput(out.name, spec.datatype, list(arr.shape), arr, binary))
        return InferenceResponse(model.name, model.version, result, request.id)

    async def infer(self, name: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        """Validate and run one request; big batches go to a thread so the loop stays responsive."""
        model = self.model(name, version)
        x, outputs = self.prepare(model, request)
        rows = x.shape[0]
        if self.metrics is not None:
            self.metrics.observe_rows(model.name, rows)
        if rows <= self.inline_rows:
            return self.run(model, x, outputs, request)
        return await asyncio.to_thread(self.run, model, x, outputs, request)

    async def predict_v1(self, name: str, body: Any) -> list[Any]:
        """KServe v1 ``{"instances": [[...], ...]}`` -> the predictions (labels or values)."""
        model = self.model(name)
        if not isinstance(body, dict) or "instances" not in body:
            raise InvalidInput('Expected a JSON object {"instances": [[feature, ...], ...]}; got no "instances".')
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput(f'"instances" must be a non-empty list of rows; got {type(instances).__name__}.')
        features = model.input.feature_names
        if isinstance(instances[0], dict):
            instances = _rows_from_dicts(instances, features, model.n_features)
        if not all(isinstance(r, list) for r in instances):
            raise InvalidInput(
                f'"instances" must be rows of {model.n_features} numbers (lists) or objects keyed by feature name.'
            )
        n_cols = len(instances[0])
        request = InferenceRequest(
            inputs=[RequestInput(model.input.name, model.input.datatype, [len(instances), n_cols], instances)],
            outputs=[model.default_outputs[0]],
        )
        response = await self.infer(name, None, request)
        return response.outputs[0].data.tolist()


def _rows_from_dicts(rows: list[Any], features: list[str] | None, n_features: int) -> list[Any]:
    if not features:
        raise InvalidInput("This model's card has no feature names; send each instance as a list of numbers.")
    out = []
    wanted = set(features)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"Instance {i} must be an object like instance 0; got {type(row).__name__}.")
        if set(row) != wanted:
            missing = sorted(wanted - set(row))
            extra = sorted(set(row) - wanted)
            raise InvalidInput(f"Instance {i} must have exactly the features {features}; missing {missing}, unknown {extra}.")
        out.append([row[f] for f in features])
    return out
