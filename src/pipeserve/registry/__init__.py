"""Model versions and aliases (``champion``, ``challenger``) in an MLflow model registry.

One small interface, :class:`Registry`, with MLflow behind it (:class:`MlflowRegistry`)::

    from pipeserve.registry import open_registry
    reg = open_registry()                       # --registry / $PIPESERVE_REGISTRY / ./mlflow.db
    mv = reg.register(Path("build/model/iris"), alias="challenger")   # MLflow assigns mv.version
    reg.promote("iris", mv.version, expected=reg.aliases("iris").get("champion"))
    reg.download("iris@champion", Path("served"))                     # verified against the card
    reg.storage_uri("iris@champion")                                  # s3://… for KServe
    with resolve_temporary("iris@champion") as found: ...             # verified copy + storage URI

Importing this package is cheap: MLflow is imported on first use. See docs/registry.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeserve.registry.base import (
    ANY,
    CHALLENGER,
    CHAMPION,
    AliasChange,
    Expected,
    ModelRef,
    ModelVersion,
    Registry,
    parse_ref,
)
from pipeserve.registry.resolve import ResolvedModel, is_model_ref, resolve, resolve_temporary
from pipeserve.registry.settings import ENV_ARTIFACTS_DESTINATION, ENV_REGISTRY, RegistrySettings

if TYPE_CHECKING:
    from pipeserve.registry.mlflow_registry import MlflowRegistry

__all__ = [
    "ANY",
    "CHALLENGER",
    "CHAMPION",
    "ENV_ARTIFACTS_DESTINATION",
    "ENV_REGISTRY",
    "AliasChange",
    "Expected",
    "MlflowRegistry",
    "ModelRef",
    "ModelVersion",
    "Registry",
    "RegistrySettings",
    "ResolvedModel",
    "is_model_ref",
    "open_registry",
    "parse_ref",
    "resolve",
    "resolve_temporary",
]


def open_registry(uri: str | None = None, *, artifacts_destination: str | None = None,
                  settings: RegistrySettings | None = None) -> MlflowRegistry:
    """Return the registry at ``uri`` (else ``$PIPESERVE_REGISTRY``, else ``./mlflow.db``).

    Nothing is contacted until the first call on the returned object.

    Args:
        uri: ``sqlite:///path.db``, a path, a database URI, or ``http(s)://`` (MLflow server).
        artifacts_destination: The MLflow server's ``--artifacts-destination`` (for storage_uri).
        settings: Ready-made settings (then ``uri`` and ``artifacts_destination`` are ignored).
    """
    from pipeserve.registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry(settings or RegistrySettings.resolve(uri, artifacts_destination=artifacts_destination))


def __getattr__(name: str) -> object:
    if name == "MlflowRegistry":
        from pipeserve.registry.mlflow_registry import MlflowRegistry

        return MlflowRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
