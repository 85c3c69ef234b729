"""Bodies of the REST adapter: OIP requests and responses (JSON, or JSON header + binary tensors),
and KServe's v1 ``{"instances": ...}`` predict.

:func:`parse_infer_request` checks the *protocol* (an object with a list of tensors, each with a
name, datatype, shape and data or binary size); the model's signature is checked by the data
plane. Messages say what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeserve.errors import InvalidInput
from pipeserve.serving import tensors
from pipeserve.serving.dataplane import (
    DataPlane,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    RequestInput,
)

JSON = b"application/json"
dumps = orjson.dumps
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def error_body(message: str) -> bytes:
    """The body of every error answer: ``{"error": message}``."""
    return dumps({"error": message})


def loads(body: bytes | memoryview) -> Any:
    """Parse a JSON body; an empty or malformed one is InvalidInput."""
    if not body:
        raise InvalidInput("Request body is empty; expected a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Request body is not valid JSON: {exc}.") from exc


# --- v2 infer request -------------------------------------------------------------------------


def parse_infer_request(body: bytes, header_length: int | None) -> InferenceRequest:
    """Parse an OIP inference request body (JSON, or JSON header + binary tensors).

    Args:
        body: The whole request body.
        header_length: The ``Inference-Header-Content-Length`` header (binary extension), or None.

    Raises:
        InvalidInput: The body breaks the protocol (not the model's signature: that is checked
            by the data plane).
    """
    obj, binary = _split_body(body, header_length)
    if not isinstance(obj, dict):
        raise InvalidInput(f'Expected a JSON object {{"inputs": [...]}}; got a JSON {type(obj).__name__}.')
    request = InferenceRequest(_inputs(obj.get("inputs"), binary))
    request_id = obj.get("id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise InvalidInput(f"'id' must be a string; got {_kind(request_id)}.")
        request.id = request_id
    params = _object(obj.get("parameters"), "'parameters'")
    if params is not None:
        request.parameters = params
        flag = _bool(params.get("binary_data_output"), "parameters.binary_data_output")
        if flag is not None:
            request.binary_output = flag
    request.outputs = _outputs(obj.get("outputs"))
    return request


def _split_body(body: bytes, header_length: int | None) -> tuple[Any, memoryview | None]:
    """The parsed JSON part of ``body`` and its binary part (None without the binary extension)."""
    if header_length is None:
        return loads(body), None
    if header_length == 0 or header_length > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length must be between 1 and the body size ({len(body)} bytes); "
            f"got {header_length}."
        )
    view = memoryview(body)
    return loads(view[:header_length]), view[header_length:]


def _inputs(raw_inputs: Any, binary: memoryview | None) -> list[RequestInput]:
    """The ``inputs`` list; each input's data is a JSON value or its slice of the binary part."""
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
        params = _object(raw.get("parameters"), f"{where}: parameters")
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
                f"{where} declares binary_data_size {size} at offset {offset}; the binary part has only "
                f"{len(binary)} bytes."
            )
        inputs.append(RequestInput(name, datatype, shape, binary[offset : offset + size], raw=True))
        offset += size
    if binary is not None and offset != len(binary):
        raise InvalidInput(
            f"The binary part of the body has {len(binary)} bytes; the inputs' binary_data_size add up to {offset}."
        )
    return inputs


def _outputs(raw_outputs: Any) -> list[RequestedOutput] | None:
    """The ``outputs`` list (None when absent: the model's default outputs)."""
    if raw_outputs is None:
        return None
    if not isinstance(raw_outputs, list):
        raise InvalidInput(f"'outputs' must be a list of {{name}} objects; got {_kind(raw_outputs)}.")
    outputs = []
    for i, raw in enumerate(raw_outputs):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be an object with a string 'name'; got {raw!r:.80}.")
        params = _object(raw.get("parameters"), f"outputs[{i}].parameters")
        binary = _bool(params.get("binary_data"), f"outputs[{i}].parameters.binary_data") if params else None
        outputs.append(RequestedOutput(raw["name"], binary))
    return outputs


def _object(value: Any, what: str) -> dict[str, Any] | None:
    """``value`` when it is a JSON object or absent (None); InvalidInput naming ``what`` otherwise."""
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"{what} must be an object; got {_kind(value)}.")
    return value


def _bool(value: Any, what: str) -> bool | None:
    """``value`` when it is true, false or absent (None); InvalidInput naming ``what`` otherwise."""
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{what} must be true or false; got {value!r}.")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a JSON {type(value).__name__}"


# --- v2 infer response ------------------------------------------------------------------------


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
    obj: dict[str, Any] = {
        "model_name": response.model_name, "model_version": response.model_version, "outputs": outputs,
    }
    if response.id is not None:
        obj["id"] = response.id
    header = dumps(obj, option=_NUMPY)
    if not blobs:
        return header, None
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(header)).encode()),
    ]
    return header + b"".join(blobs), headers


# --- KServe v1 --------------------------------------------------------------------------------


async def predict_v1(dataplane: DataPlane, name: str, body: Any) -> list[Any]:
    """KServe v1 ``{"instances": [[...], ...]}`` -> the predictions (labels or values).

    Instances are rows of numbers, or objects keyed by the model card's feature names. The rows
    go through the same data plane as a v2 request, which asks for the primary output only.
    """
    model = dataplane.model(name)
    if not isinstance(body, dict) or "instances" not in body:
        raise InvalidInput('Expected a JSON object {"instances": [[feature, ...], ...]}; got no "instances".')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(f'"instances" must be a non-empty list of rows; got {type(instances).__name__}.')
    if isinstance(instances[0], dict):
        instances = _rows_from_dicts(instances, model.input.feature_names)
    if not all(isinstance(r, list) for r in instances):
        raise InvalidInput(
            f'"instances" must be rows of {model.n_features} numbers (lists) or objects keyed by feature name.'
        )
    shape = [len(instances), len(instances[0])]
    request = InferenceRequest(
        inputs=[RequestInput(model.input.name, model.input.datatype, shape, instances)],
        outputs=[model.default_outputs[0]],
    )
    response = await dataplane.infer(name, None, request)
    return response.outputs[0].data.tolist()


def _rows_from_dicts(rows: list[Any], features: list[str] | None) -> list[Any]:
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
            raise InvalidInput(
                f"Instance {i} must have exactly the features {features}; missing {missing}, unknown {extra}."
            )
        out.append([row[f] for f in features])
    return out
