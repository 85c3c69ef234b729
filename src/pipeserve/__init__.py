"""pipeserve: from a scikit-learn model to an autoscaled KServe InferenceService.

Importing the package is cheap on purpose: heavy modules (scikit-learn, onnxruntime, kfp,
kserve) are imported by the submodules that need them, not here.
"""

from pipeserve.errors import (
    ClusterError,
    ConfigError,
    DataError,
    InferenceError,
    IntegrityError,
    InvalidInput,
    ModelNotReady,
    NotFound,
    ParityError,
    PipeserveError,
    UserError,
)

__version__ = "0.1.0"

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "InferenceError",
    "IntegrityError",
    "InvalidInput",
    "ModelNotReady",
    "NotFound",
    "ParityError",
    "PipeserveError",
    "UserError",
    "__version__",
]
