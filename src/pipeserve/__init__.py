"""pipeserve: from a scikit-learn model to an autoscaled KServe InferenceService.

Importing the package is cheap on purpose: heavy modules (scikit-learn, onnxruntime, kfp,
kserve, mlflow) are imported by the submodules that need them, not here. The SDK entry points
(:func:`fit`, :func:`run_pipeline`, :func:`load`) load :mod:`pipeserve.sdk` when called::

    m = pipeserve.fit("iris")
    with m.serve() as endpoint:
        endpoint.predict([[5.1, 3.5, 1.4, 0.2]])
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
    "fit",
    "load",
    "run_pipeline",
]


# Thin and unannotated on purpose: importing typing here would double `import pipeserve`'s time;
# pipeserve.sdk holds the signatures.
def fit(source: str, **options: object):
    """Train, evaluate and package a model in this process: :func:`pipeserve.sdk.fit` (a ``pipeserve.sdk.Model``)."""
    from pipeserve.sdk import fit as fit_

    return fit_(source, **options)


def run_pipeline(source: str = "iris", **options: object):
    """Run the pipeline locally on kfp.local: :func:`pipeserve.sdk.run_pipeline` (a ``pipeserve.sdk.Model``)."""
    from pipeserve.sdk import run_pipeline as run_pipeline_

    return run_pipeline_(source, **options)


def load(ref: object, **options: object):
    """A model from a folder or a registry (``iris@champion``, ``iris/3``): :func:`pipeserve.sdk.load`."""
    from pipeserve.sdk import load as load_

    return load_(ref, **options)
