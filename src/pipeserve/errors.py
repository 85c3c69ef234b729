"""The one error hierarchy of pipeserve, and how its errors travel over HTTP and gRPC.

Every error the project raises on purpose derives from :class:`PipeserveError`. The HTTP status,
the gRPC status code and the CLI exit code live on the class, so the REST layer, the gRPC layer
and the CLI each need one handler only::

    PipeserveError                      500  INTERNAL            exit 1
    ├── UserError                       400  INVALID_ARGUMENT    exit 2   (the caller can fix it)
    │   ├── ConfigError                                                   bad option, estimator, hyperparameter
    │   ├── DataError                                                     unreadable file, missing column, bad dtype
    │   ├── InvalidInput                                                  a request that breaks the signature
    │   ├── NotFound                    404  NOT_FOUND                    unknown model, version, output, route
    │   ├── MethodNotAllowed            405  UNIMPLEMENTED
    │   ├── PayloadTooLarge             413  RESOURCE_EXHAUSTED
    │   └── UnsupportedMediaType        415
    ├── ParityError                                              exit 1   ONNX and scikit-learn disagree
    ├── IntegrityError                                           exit 1   a file does not match its sha256
    ├── ModelNotReady                   503  UNAVAILABLE                  loading or draining
    ├── ServerUnreachable               503  UNAVAILABLE         exit 1   (client side) nothing answers
    ├── InferenceError                  500  INTERNAL                     the model itself failed
    └── ClusterError                                             exit 1   no cluster, or the cluster refused

The way back, from what a v2 server answered to an error class, is :func:`error_for_http_status`
and :func:`error_for_grpc_code`: the client uses them, the server uses the class attributes, and
both read the same classes, so a round trip keeps the class.

Modules that need a more specific error subclass one of these next to the code that raises it:
``kube.spec.DeploymentConfigError`` and ``kube.schema.ManifestInvalid`` (ConfigError),
``serving.rest.RouteMethodNotAllowed`` (MethodNotAllowed), ``serving.server.ServerStartError``,
``localserver.LocalServerError``, ``localrun.PipelineFailed`` and ``smoke.SmokeTestFailed``
(PipeserveError, exit 1).

Messages say what was expected, what was got, and how to fix it.
"""

from __future__ import annotations

from http import HTTPStatus


class PipeserveError(Exception):
    """Base class of every error pipeserve raises on purpose."""

    status_code: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    #: Name of the gRPC status code (``grpc.StatusCode[name]``; a name, so this module needs no grpc).
    grpc_code: str = "INTERNAL"
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(PipeserveError):
    """Something the caller sent or chose is wrong; fixing the input fixes it."""

    status_code = HTTPStatus.BAD_REQUEST
    grpc_code = "INVALID_ARGUMENT"
    exit_code = 2


class ConfigError(UserError):
    """An option, estimator name or hyperparameter is invalid."""


class DataError(UserError):
    """A dataset cannot be read or does not have the expected shape or types."""


class InvalidInput(UserError):
    """An inference request does not match the model's signature."""


class NotFound(UserError):
    """A model, version, output or route does not exist."""

    status_code = HTTPStatus.NOT_FOUND
    grpc_code = "NOT_FOUND"


class MethodNotAllowed(UserError):
    """The route exists but not for this HTTP method."""

    status_code = HTTPStatus.METHOD_NOT_ALLOWED
    grpc_code = "UNIMPLEMENTED"


class PayloadTooLarge(UserError):
    """The request body is larger than the server accepts."""

    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(UserError):
    """The request body is of a content type the route does not take."""

    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class ParityError(PipeserveError):
    """The ONNX model and the scikit-learn model disagree on the test split."""


class IntegrityError(PipeserveError):
    """A model file does not match the sha256 recorded in its model card."""


class ModelNotReady(PipeserveError):
    """The model (or the server) is loading or shutting down."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = "UNAVAILABLE"


class ServerUnreachable(PipeserveError):
    """A client cannot reach the server (refused, reset, unknown host, timed out)."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = "UNAVAILABLE"


class InferenceError(PipeserveError):
    """The model failed on a request that passed validation (a server-side fault)."""


class ClusterError(PipeserveError):
    """No Kubernetes cluster is reachable, or it refused the request."""


# --- on the wire ------------------------------------------------------------------------------
# The server answers an error with the status on its class; these maps read an answer back into
# the class. Each is derived from the classes, so a status is written once, on its class.

#: The classes a v2 server answers with, most specific last (InvalidInput is what 400 means).
_ON_THE_WIRE: tuple[type[PipeserveError], ...] = (
    InferenceError, UnsupportedMediaType, NotFound, MethodNotAllowed, PayloadTooLarge, ModelNotReady, InvalidInput,
)

#: HTTP status -> error class. 422: FastAPI-based servers (KServe) reject malformed bodies so.
HTTP_ERRORS: dict[int, type[PipeserveError]] = {
    **{int(cls.status_code): cls for cls in _ON_THE_WIRE},
    int(HTTPStatus.UNPROCESSABLE_ENTITY): InvalidInput,
}

#: gRPC status code name -> error class; the last three are sent by other servers or by gRPC itself.
#: UNAVAILABLE reads as ModelNotReady: a client that knows the connection failed says ServerUnreachable.
GRPC_ERRORS: dict[str, type[PipeserveError]] = {
    **{cls.grpc_code: cls for cls in _ON_THE_WIRE},
    "OUT_OF_RANGE": InvalidInput,
    "FAILED_PRECONDITION": ModelNotReady,
    "DEADLINE_EXCEEDED": ServerUnreachable,
}


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (white space folded), cut at ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_for_http_status(status: int) -> type[PipeserveError]:
    """The error class for an HTTP status a server answered with (other 4xx: UserError; 5xx: InferenceError)."""
    cls = HTTP_ERRORS.get(status)
    if cls is not None:
        return cls
    return UserError if 400 <= status < 500 else InferenceError


def error_for_grpc_code(code: str) -> type[PipeserveError]:
    """The error class for a gRPC status code name (``NOT_FOUND`` or ``StatusCode.NOT_FOUND``)."""
    return GRPC_ERRORS.get(code.removeprefix("StatusCode."), InferenceError)


class RegistryError(PipeserveError):
    """The model registry (MLflow) is unreachable, or it refused or failed an operation."""


class ConflictError(PipeserveError):
    """A compare-and-set lost: the alias (or lock) was changed by someone else since it was read."""

    status_code = HTTPStatus.CONFLICT
    grpc_code = "ABORTED"
    exit_code = 1
