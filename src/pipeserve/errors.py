"""The one error hierarchy of pipeserve.

Every error the project raises on purpose derives from :class:`PipeserveError`. The HTTP status
and the CLI exit code live on the class, so the REST layer, the gRPC layer and the CLI each need
one handler only::

    PipeserveError                      500, exit 1
    ├── UserError                       400, exit 2   (the caller can fix it)
    │   ├── ConfigError                               bad option, estimator, hyperparameter
    │   ├── DataError                                 unreadable file, missing column, bad dtype
    │   ├── InvalidInput                              an inference request that breaks the signature
    │   ├── NotFound                    404           unknown model, version, output, route
    │   ├── MethodNotAllowed            405
    │   ├── PayloadTooLarge             413
    │   └── UnsupportedMediaType        415
    ├── ParityError                     500, exit 1   ONNX and scikit-learn disagree
    ├── IntegrityError                  500, exit 1   a file does not match its sha256
    ├── ModelNotReady                   503
    ├── InferenceError                  500           the model itself failed
    └── ClusterError                    exit 1        no cluster, or the cluster refused

Modules that need a more specific error subclass one of these next to the code that raises it:
``kube.spec.DeploymentConfigError`` and ``kube.schema.ManifestInvalid`` (ConfigError),
``serving.rest.RouteMethodNotAllowed`` (MethodNotAllowed), ``client.ServerUnreachable``,
``serving.server.ServerStartError``, ``localrun.PipelineFailed`` and ``smoke.SmokeTestFailed``
(PipeserveError, exit 1).

Messages say what was expected, what was got, and how to fix it.
"""

from __future__ import annotations

from http import HTTPStatus


class PipeserveError(Exception):
    """Base class of every error pipeserve raises on purpose."""

    status_code: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(PipeserveError):
    """Something the caller sent or chose is wrong; fixing the input fixes it."""

    status_code = HTTPStatus.BAD_REQUEST
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


class MethodNotAllowed(UserError):
    """The route exists but not for this HTTP method."""

    status_code = HTTPStatus.METHOD_NOT_ALLOWED


class PayloadTooLarge(UserError):
    """The request body is larger than the server accepts."""

    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


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


class InferenceError(PipeserveError):
    """The model failed on a request that passed validation (a server-side fault)."""


class ClusterError(PipeserveError):
    """No Kubernetes cluster is reachable, or it refused the request."""
