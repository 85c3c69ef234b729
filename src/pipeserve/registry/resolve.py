"""From a registry reference to what ``serve``, ``manifest``, ``deploy`` and the SDK need.

``iris@champion`` (or ``iris/3``) becomes a verified local copy of the version's model folder, its
card, and the ``storageUri`` KServe fetches it from (or why a cluster cannot)::

    from pipeserve.registry import resolve_temporary
    with resolve_temporary("iris@champion", registry="sqlite:///mlflow.db") as found:
        found.model_dir         # <tmp>/iris/ with iris/3/model.onnx, verified against the card
        found.storage_uri       # s3://… or None (found.storage_problem says why)

An alias is read once: everything after that uses the version it pointed to, so a promote that
lands meanwhile cannot mix two versions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeserve.errors import ConfigError
from pipeserve.registry.base import ModelRef, ModelVersion, parse_ref

if TYPE_CHECKING:
    from pipeserve.modelcard import ModelCard
    from pipeserve.registry.base import Registry


@dataclass(frozen=True)
class ResolvedModel:
    """A registered version, downloaded and verified.

    Args:
        version: The version the reference named (an alias resolved to its number).
        model_dir: The verified model folder, ``<dest>/<name>/`` (serve its parent, the repository).
        card: Its model card (carrying the registry's version number).
        storage_uri: What KServe fetches the version from, or None when a cluster cannot.
        storage_problem: Why there is no storage URI (one line), else None.
    """

    version: ModelVersion
    model_dir: Path
    card: ModelCard
    storage_uri: str | None
    storage_problem: str | None = None

    @property
    def repository(self) -> Path:
        """The model repository holding :attr:`model_dir` (what ``pipeserve serve`` takes)."""
        return self.model_dir.parent


def is_model_ref(text: str | Path) -> bool:
    """True when ``text`` names a registered version (``NAME@ALIAS``, ``NAME/VERSION``, ``models:/…``)
    rather than a folder: an existing path always wins, and a bare ``NAME`` is a path."""
    text = str(text)
    if Path(text).exists():
        return False
    if text.startswith("models:/"):
        return True
    try:
        ref = parse_ref(text)
    except ConfigError:
        return False
    return bool(ref.alias or ref.version)


def open_any(registry: str | Registry | None, artifacts_destination: str | None = None) -> Registry:
    """``registry`` itself when it is a registry, else the one at that URI (None: the default)."""
    if registry is not None and not isinstance(registry, str):
        return registry
    from pipeserve.registry import open_registry

    return open_registry(registry, artifacts_destination=artifacts_destination)


def resolve(ref: str | ModelRef, dest: Path, *, registry: str | Registry | None = None,
            artifacts_destination: str | None = None) -> ResolvedModel:
    """Download the version ``ref`` names into the model repository ``dest`` (verified) and locate it.

    Args:
        ref: ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (the latest ready version).
        dest: Model repository folder; the model lands in ``dest/<name>/``.
        registry: A registry, or its URI (None: ``$PIPESERVE_REGISTRY``, else ``./mlflow.db``).
        artifacts_destination: The MLflow server's ``--artifacts-destination`` (for the storage URI).

    Raises:
        NotFound: No such model, alias or version.
        IntegrityError: The downloaded files do not match the registered card.
        RegistryError: The registry is unreachable or failed.
    """
    from pipeserve.modelcard import read_card
    from pipeserve.registry.locations import UnfetchableStorage

    reg = open_any(registry, artifacts_destination)
    mv = reg.get(parse_ref(ref))
    model_dir = reg.download(mv.ref, Path(dest))
    storage, problem = None, None
    try:
        storage = reg.storage_uri(mv.ref)
    except UnfetchableStorage as exc:
        problem = str(exc)
    return ResolvedModel(mv, model_dir, read_card(model_dir), storage, problem)


@contextlib.contextmanager
def resolve_temporary(ref: str | ModelRef, *, registry: str | Registry | None = None,
                      artifacts_destination: str | None = None) -> Iterator[ResolvedModel]:
    """:func:`resolve` into a temporary folder, removed when the block ends."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pipeserve-model-") as tmp:
        yield resolve(ref, Path(tmp), registry=registry, artifacts_destination=artifacts_destination)
