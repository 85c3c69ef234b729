"""The protocol-agnostic data plane: model registry, health, metadata, validation and inference.

REST and gRPC both turn their wire format into an :class:`InferenceRequest` whose inputs still
hold undecoded data (a JSON list or raw bytes); the data plane checks every input against the
model card's signature *before* decoding, decodes and checks the values
(:func:`pipeserve.serving.signature.prepare`), and only then calls the backend. This module
imports no web framework and no protobuf (a test asserts it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeserve import __version__
from pipeserve.errors import ConfigError, InferenceError, NotFound, PipeserveError
from pipeserve.modelcard import ModelCard, TensorSpec, read_card, verify_files
from pipeserve.serving.backends import Backend, open_backend
from pipeserve.serving.signature import prepare

if TYPE_CHECKING:  # prometheus_client is imported by the worker that creates the metrics
    from pipeserve.serving.metrics import Metrics

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

    def __init__(self, models: list[ServedModel], inline_rows: int = 4096, metrics: Metrics | None = None) -> None:
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

    def run(
        self, model: ServedModel, x: np.ndarray, outputs: list[RequestedOutput], request: InferenceRequest
    ) -> InferenceResponse:
        """Run the backend on a validated matrix (synchronously) and wrap the results."""
        names = [o.name for o in outputs]
        try:
            arrays = model.backend.run(x, names)
        except PipeserveError:
            raise
        except Exception as exc:  # the model itself failed on valid input: a server fault
            raise InferenceError(
                f"Model {model.name!r} failed on a valid request: {type(exc).__name__}: {exc}"
            ) from exc
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
        x, outputs = prepare(model, request)
        rows = x.shape[0]
        if self.metrics is not None:
            self.metrics.observe_rows(model.name, rows)
        if rows <= self.inline_rows:
            return self.run(model, x, outputs, request)
        return await asyncio.to_thread(self.run, model, x, outputs, request)
