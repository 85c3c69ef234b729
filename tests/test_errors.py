"""The error classes carry their wire statuses, and the maps read them back: a round trip keeps the class."""

from __future__ import annotations

import grpc
import pytest

from pipeserve import errors
from pipeserve.errors import (
    ConfigError,
    InferenceError,
    IntegrityError,
    InvalidInput,
    MethodNotAllowed,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    ServerUnreachable,
    UnsupportedMediaType,
    UserError,
    error_for_grpc_code,
    error_for_http_status,
)
from pipeserve.serving.grpc_server import grpc_code

WIRE = [InvalidInput, NotFound, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType, ModelNotReady, InferenceError]


@pytest.mark.parametrize("cls", WIRE, ids=lambda c: c.__name__)
def test_http_round_trip_keeps_the_class(cls: type) -> None:
    assert error_for_http_status(int(cls.status_code)) is cls


@pytest.mark.parametrize("cls", [c for c in WIRE if c is not UnsupportedMediaType], ids=lambda c: c.__name__)
def test_grpc_round_trip_keeps_the_class(cls: type) -> None:
    code = grpc_code(cls("x"))  # what the server sends
    assert error_for_grpc_code(str(code)) is cls  # what the client reads ("StatusCode.NOT_FOUND")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnsupportedMediaType("x"), grpc.StatusCode.INVALID_ARGUMENT),  # gRPC has no media types
        (ConfigError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (IntegrityError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_grpc_codes_of_other_errors(error: errors.PipeserveError, code: grpc.StatusCode) -> None:
    assert grpc_code(error) == code


@pytest.mark.parametrize(
    ("status", "cls"),
    [(422, InvalidInput), (418, UserError), (502, InferenceError), (500, InferenceError)],
)
def test_http_statuses_of_other_servers(status: int, cls: type) -> None:
    assert error_for_http_status(status) is cls


@pytest.mark.parametrize(
    ("code", "cls"),
    [("OUT_OF_RANGE", InvalidInput), ("FAILED_PRECONDITION", ModelNotReady), ("DEADLINE_EXCEEDED", ServerUnreachable),
     ("StatusCode.UNKNOWN", InferenceError), ("", InferenceError)],
)
def test_grpc_codes_of_other_servers(code: str, cls: type) -> None:
    assert error_for_grpc_code(code) is cls


def test_every_grpc_code_on_a_class_is_a_real_one() -> None:
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.PipeserveError):
            assert cls.grpc_code in grpc.StatusCode.__members__, cls
