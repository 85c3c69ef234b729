"""The registry's vocabulary: references, versions, alias changes, and the Registry interface.

Nothing here talks to a registry or imports MLflow; :mod:`pipeserve.registry.mlflow_registry`
implements :class:`Registry` on MLflow.
"""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pipeserve.errors import ConfigError

CHAMPION = "champion"
CHALLENGER = "challenger"
# Registered model names MLflow and pipeserve both accept; pipeserve's own names are DNS-1035
# labels (see packaging), which this includes.
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}"
_ALIAS = r"[A-Za-z][A-Za-z0-9_-]{0,254}"
_REF = re.compile(rf"(?:models:/)?(?P<name>{_NAME})(?:@(?P<alias>{_ALIAS})|/(?P<version>[0-9]+))?")


class _Any(enum.Enum):
    ANY = "any"


#: ``expected=ANY``: move the alias whatever it points to now (still serialized with other writers).
ANY = _Any.ANY
Expected = str | None | Literal[_Any.ANY]


@dataclass(frozen=True)
class ModelRef:
    """A reference to one model version: ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (the latest).

    Args:
        name: Registered model name.
        alias: Alias (``champion``, ``challenger``, ...), or None.
        version: Version number as a string, or None.
    """

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version else self.name

    @property
    def mlflow_uri(self) -> str:
        """The ``models:/`` URI MLflow's own client reads (``models:/NAME/latest`` for the latest)."""
        return f"models:/{self}" if (self.alias or self.version) else f"models:/{self.name}/latest"


def parse_ref(ref: str | ModelRef) -> ModelRef:
    """Parse ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (a ``models:/`` prefix is accepted).

    Raises:
        ConfigError: The text is none of these forms.
    """
    if isinstance(ref, ModelRef):
        return ref
    m = _REF.fullmatch(ref.strip())
    if not m or (m["version"] is not None and int(m["version"]) < 1):
        raise ConfigError(
            f"Model reference {ref!r} is not valid: use NAME@ALIAS (iris@champion), NAME/VERSION (iris/3) "
            "or NAME (the latest version)."
        )
    return ModelRef(m["name"], m["alias"], str(int(m["version"])) if m["version"] else None)


def check_alias(alias: str) -> str:
    """Return ``alias`` if MLflow accepts it as an alias name, else raise ConfigError."""
    if not re.fullmatch(_ALIAS, alias) or alias == "latest" or re.fullmatch(r"v[0-9]+", alias):
        raise ConfigError(
            f"Alias {alias!r} is not valid: use a letter then letters, digits, '-' or '_' (not 'latest' or "
            f"'v<number>', which MLflow reserves), e.g. {CHAMPION!r} or {CHALLENGER!r}."
        )
    return alias


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as pipeserve reads it back from the registry.

    Args:
        name: Registered model name (also the Triton folder and the v2 model name).
        version: Version number assigned by the registry (the card's and the Triton folder's version).
        aliases: Aliases pointing at this version.
        status: ``ready``, or ``pending`` while (or if) its registration did not finish.
        source: Artifact URI of the model repository (it holds ``<name>/``).
        run_id: MLflow run that holds the artifacts, metrics and params.
        created_at: ISO 8601 UTC time of registration.
        task: ``classification`` or ``regression``.
        estimator: Catalogue estimator name.
        metrics: Held-out metrics from the model card.
        params: Estimator hyperparameters.
        data_fingerprint: ``sha256:<hex>`` of the training data.
        files: sha256 of every file of the model folder (the card's ``files``).
        card_sha256: sha256 of ``model-card.json`` as registered.
        tags: Every version tag, as stored.
    """

    name: str
    version: str
    aliases: tuple[str, ...]
    status: str
    source: str
    run_id: str | None
    created_at: str
    task: str | None = None
    estimator: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    card_sha256: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, version=self.version)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return out


@dataclass(frozen=True)
class AliasChange:
    """One recorded move of an alias (MLflow keeps no alias history; pipeserve records its own).

    Args:
        seq: Position in the model's history, from 1; it only grows.
        alias: The alias moved.
        action: ``register``, ``promote``, ``rollback``, ``set`` or ``delete``.
        from_version: Where the alias pointed before (None: nowhere).
        to_version: Where it points after (None: removed).
        at: ISO 8601 UTC time.
        actor: Who moved it (``PIPESERVE_ACTOR``, else ``user@host``).
        reason: Free text given with the move.
    """

    seq: int
    alias: str
    action: str
    from_version: str | None
    to_version: str | None
    at: str
    actor: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AliasChange:
        return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__ if k in raw})


@runtime_checkable
class Registry(Protocol):
    """Model versions and aliases, with a recorded alias history and compare-and-set moves.

    ``expected`` in the alias moves is the version the caller last read for that alias (None:
    it pointed nowhere); the move fails with ConflictError if the alias points elsewhere now.
    ``ANY`` skips the comparison (moves are still serialized with other pipeserve writers).
    """

    def register(self, model_dir: Path, *, alias: str | None = None, actor: str | None = None,
                 reason: str = "") -> ModelVersion:
        """Register a packaged model folder as a new version; the registry picks the number."""

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """Return the version ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (latest ready) refers to."""

    def versions(self, name: str) -> list[ModelVersion]:
        """Return every version of ``name``, newest first."""

    def aliases(self, name: str) -> dict[str, str]:
        """Return ``{alias: version}`` for ``name``."""

    def set_alias(self, name: str, alias: str, version: str | None, *, expected: Expected = ANY,
                  actor: str | None = None, reason: str = "", action: str = "set") -> AliasChange | None:
        """Point ``alias`` at ``version`` (None removes it); None when it already pointed there."""

    def promote(self, name: str, version: str, *, expected: Expected = ANY, actor: str | None = None,
                reason: str = "") -> AliasChange | None:
        """Make ``version`` the champion (compare-and-set against ``expected``)."""

    def rollback(self, name: str, *, actor: str | None = None, reason: str = "") -> AliasChange:
        """Give the champion alias back to the previous champion recorded in the history."""

    def history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Return the recorded alias moves of ``name``, oldest first (one alias, or all)."""

    def download(self, ref: str | ModelRef, dest: Path) -> Path:
        """Download a version into the model repository ``dest`` and verify it; return ``dest/<name>``."""

    def storage_uri(self, ref: str | ModelRef) -> str:
        """Return the URI KServe fetches this version from (s3://, gs://, https://, pvc://)."""
