"""A request against a model's signature: check it, decode it to the feature matrix, pick the outputs.

The inputs still hold undecoded data (a JSON list or raw bytes). Everything the client could get
wrong is checked *before* anything is decoded (name, datatype, shape), then the values are
decoded with :mod:`pipeserve.serving.tensors` and checked (finite, or NaN where the estimator
takes missing values). Messages say what the model expects and what came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeserve.errors import InvalidInput, NotFound
from pipeserve.serving import tensors

if TYPE_CHECKING:  # dataplane imports this module
    from pipeserve.serving.dataplane import InferenceRequest, RequestedOutput, RequestInput, ServedModel


def prepare(model: ServedModel, request: InferenceRequest) -> tuple[np.ndarray, list[RequestedOutput]]:
    """Check ``request`` against the model's signature and decode it to a float32 matrix.

    Returns:
        The feature matrix and the outputs to compute, in the order to return them.

    Raises:
        InvalidInput: The request breaks the signature (names, datatype, shape, values).
        NotFound: The request asks for an output the model does not have.
    """
    inp = _the_input(model, request.inputs)
    where = f"Input {inp.name!r}"
    shape = _check_declaration(model, inp, where)
    if inp.raw:
        arr = tensors.array_from_bytes(inp.data, inp.datatype, shape, where)
    else:
        arr = tensors.array_from_json(inp.data, inp.datatype, shape, where)
    if arr.dtype != np.float32:
        with np.errstate(over="ignore"):  # FP64 beyond FP32's range becomes inf, refused below
            arr = arr.astype(np.float32)
    _check_values(model, arr, where)
    return arr, _outputs(model, request.outputs)


def _the_input(model: ServedModel, inputs: list[RequestInput]) -> RequestInput:
    spec = model.input
    expected = f"one input {spec.name!r} ({spec.datatype} [N, {model.n_features}])"
    if not inputs:
        raise InvalidInput(f"Model {model.name!r} expects {expected}; got no inputs.")
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise InvalidInput(f"Model {model.name!r} expects {expected}; got {len(inputs)} inputs {names}.")
    if inputs[0].name != spec.name:
        raise InvalidInput(f"Model {model.name!r} expects {expected}; got an input named {inputs[0].name!r}.")
    return inputs[0]


def _check_declaration(model: ServedModel, inp: RequestInput, where: str) -> list[int]:
    """Check the declared datatype and shape (before any data is decoded); return the shape."""
    tensors.check_datatype(inp.datatype, where)
    if inp.datatype not in model.accepted_datatypes:
        raise InvalidInput(f"{where} must have datatype {' or '.join(model.accepted_datatypes)}; got {inp.datatype}.")
    shape = tensors.check_shape(inp.shape, where)
    n = model.n_features
    if len(shape) != 2 or shape[1] != n:
        raise InvalidInput(f"{where} must have shape [N, {n}] (N rows of {n} features); got {shape}.")
    if shape[0] == 0:
        raise InvalidInput(f"{where} must have at least one row; got shape {shape}.")
    return shape


def _check_values(model: ServedModel, arr: np.ndarray, where: str) -> None:
    if np.isfinite(arr).all():
        return
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


def _outputs(model: ServedModel, outputs: list[RequestedOutput] | None) -> list[RequestedOutput]:
    if outputs is None:
        return model.default_outputs
    if not outputs:
        names = ", ".join(model.output_specs)
        raise InvalidInput(f"'outputs' must name at least one of {names} or be left out; got [].")
    for out in outputs:
        if out.name not in model.output_specs:
            raise NotFound(
                f"Model {model.name!r} has no output {out.name!r}; its outputs are: {', '.join(model.output_specs)}."
            )
    return outputs
