"""gRPC adapter: ``inference.GRPCInferenceService`` (Open Inference Protocol v2) on grpc.aio.

The stubs are tritonclient's generated ``service_pb2``/``service_pb2_grpc`` (the same
``inference`` package and messages as KServe's proto, plus Triton's extensions, which answer
UNIMPLEMENTED). Outputs always travel in ``raw_output_contents``, as Triton does; inputs may use
typed ``contents`` or ``raw_input_contents``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from pipeserve.errors import InvalidInput, PipeserveError
from pipeserve.serving import tensors
from pipeserve.serving.dataplane import DataPlane, InferenceRequest, RequestedOutput, RequestInput

if TYPE_CHECKING:
    from pipeserve.serving.metrics import Metrics

log = logging.getLogger("pipeserve.serve")

_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def grpc_code(exc: PipeserveError) -> grpc.StatusCode:
    """The gRPC status code for an error: the one named on its class (see :mod:`pipeserve.errors`)."""
    return grpc.StatusCode[exc.grpc_code]


def _param_value(param: Any) -> Any:
    kind = param.WhichOneof("parameter_choice")
    return getattr(param, kind) if kind else None


def parse_model_infer(request: Any) -> InferenceRequest:
    """Turn a ``ModelInferRequest`` into the data plane's request (data still undecoded)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents must hold one entry per input ({len(request.inputs)}); got {len(raw)}."
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        where = f"Input {tensor.name!r}"
        datatype = tensors.check_datatype(tensor.datatype, where)
        shape = [int(d) for d in tensor.shape]
        if any(d < 0 for d in shape):
            raise InvalidInput(f"{where}: shape must be non-negative integers; got {shape}.")
        if raw:
            inputs.append(RequestInput(tensor.name, datatype, shape, raw[i], raw=True))
            continue
        field = _CONTENTS_FIELD.get(datatype)
        if field is None:
            raise InvalidInput(f"{where}: {datatype} data can only be sent in raw_input_contents.")
        values = getattr(tensor.contents, field)
        count = tensors.element_count(shape)
        if len(values) != count:
            raise InvalidInput(f"{where}: shape {shape} needs {count} values; got {len(values)} in contents.{field}.")
        if datatype == "BYTES":
            data = tensors.array_to_bytes(np.array(list(values), dtype=object), "BYTES")
        else:
            data = np.asarray(values, dtype=tensors.NUMPY_DTYPES[datatype]).tobytes()
        inputs.append(RequestInput(tensor.name, datatype, shape, data, raw=True))
    out = InferenceRequest(inputs, id=request.id or None, binary_output=True)
    if request.outputs:
        out.outputs = [RequestedOutput(o.name, True) for o in request.outputs]
    if request.parameters:
        out.parameters = {k: _param_value(v) for k, v in request.parameters.items()}
    return out


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 gRPC service over the shared data plane.

    Args:
        dataplane: The data plane.
        metrics: Optional metrics (route label ``grpc_<method>``).
    """

    def __init__(self, dataplane: DataPlane, metrics: Metrics | None = None) -> None:
        self.dp = dataplane
        self.metrics = metrics
        self._model_meta = {name: self._metadata_message(m.metadata) for name, m in dataplane.models.items()}

    @staticmethod
    def _metadata_message(meta: dict[str, Any]) -> Any:
        def tensor(t: dict[str, Any]) -> Any:
            return pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])

        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(t) for t in meta["inputs"]], outputs=[tensor(t) for t in meta["outputs"]],
        )

    async def _abort(self, context: Any, exc: PipeserveError) -> None:
        await context.abort(grpc_code(exc), exc.message)

    def _observe(self, model: str, route: str, status: int, start: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(model if model in self.dp.models else "", route, status, time.perf_counter() - start)

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        return pb.ServerLiveResponse(live=self.dp.live)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.dp.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        meta = self.dp.server_metadata
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            ready = self.dp.model_ready(request.name, request.version or None)
        except PipeserveError as exc:
            await self._abort(context, exc)
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            self.dp.model(request.name, request.version or None)
        except PipeserveError as exc:
            await self._abort(context, exc)
        return self._model_meta[request.name]

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        start = time.perf_counter()
        name = request.model_name
        try:
            response = await self.dp.infer(name, request.model_version or None, parse_model_infer(request))
        except PipeserveError as exc:
            self._observe(name, "grpc_infer", int(exc.status_code), start)
            await self._abort(context, exc)
        except Exception as exc:  # a bug of ours: INTERNAL with a pointer to the log
            log.exception("Unhandled error in ModelInfer")
            self._observe(name, "grpc_infer", 500, start)
            message = f"Internal server error ({type(exc).__name__}); see the server log."
            await context.abort(grpc.StatusCode.INTERNAL, message)
        message = pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version)
        if response.id:
            message.id = response.id
        for out in response.outputs:
            message.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            message.raw_output_contents.append(tensors.array_to_bytes(out.data, out.datatype))
        self._observe(name, "grpc_infer", 200, start)
        return message


async def start_grpc_server(
    dataplane: DataPlane, metrics: Metrics | None, host: str, port: int, max_message_bytes: int
) -> Any:
    """Start a grpc.aio server on ``host:port`` (SO_REUSEPORT, so workers share the port)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max(max_message_bytes, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(dataplane, metrics), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"gRPC could not bind {address}")
    await server.start()
    return server
