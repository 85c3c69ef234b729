"""Where the registry lives and how pipeserve talks to it: one typed object, built on demand.

Nothing here runs at import: :meth:`RegistrySettings.resolve` reads the environment when a CLI
command (or :func:`pipeserve.registry.open_registry`) asks for it.

The default registry is MLflow's own default: ``sqlite:///mlflow.db`` in the current directory,
with artifacts in ``./mlruns`` beside it, so ``mlflow ui`` / ``mlflow server`` started in the same
directory, and ``MlflowClient()`` there, show the same models and aliases.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeserve.errors import ConfigError

ENV_REGISTRY = "PIPESERVE_REGISTRY"
ENV_ARTIFACTS_DESTINATION = "PIPESERVE_REGISTRY_ARTIFACTS"
ENV_ACTOR = "PIPESERVE_ACTOR"
DEFAULT_DB = "mlflow.db"
ARTIFACTS_DIR = "mlruns"
DEFAULT_EXPERIMENT = "pipeserve"
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach the registry.

    Args:
        uri: MLflow tracking and registry URI: ``sqlite:////abs/path/mlflow.db``, another
            SQLAlchemy URI, or ``http(s)://`` for an MLflow tracking server.
        artifact_root: Where a new experiment stores artifacts (database stores only; a server
            decides for itself). For SQLite: ``mlruns/`` beside the database file.
        artifacts_destination: The MLflow server's ``--artifacts-destination`` (e.g.
            ``s3://bucket/mlartifacts``), to turn ``mlflow-artifacts:`` locations into URIs KServe
            can fetch.
        experiment: MLflow experiment that holds the registration runs.
        actor: Recorded with every alias move.
        http_timeout: Seconds per HTTP request to a tracking server.
        http_retries: Retries per HTTP request (MLflow's default, 7 with backoff, takes minutes
            to report an unreachable server).
        lock_ttl: Seconds after which another writer's alias lock counts as abandoned.
        lock_wait: Seconds to wait for another writer's alias lock before giving up.
    """

    uri: str
    artifact_root: str | None = None
    artifacts_destination: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    actor: str = "pipeserve"
    http_timeout: float = 30.0
    http_retries: int = 2
    lock_ttl: float = 60.0
    lock_wait: float = 30.0

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite registry, else None."""
        if not self.uri.startswith("sqlite:///"):
            return None
        return Path(self.uri[len("sqlite:///"):])

    @property
    def display_uri(self) -> str:
        """The URI without credentials, for messages."""
        scheme, sep, rest = self.uri.partition("://")
        if sep and "@" in rest.split("/", 1)[0]:
            return f"{scheme}://…@{rest.split('@', 1)[1]}"
        return self.uri

    @classmethod
    def resolve(cls, uri: str | None = None, *, artifacts_destination: str | None = None,
                environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> RegistrySettings:
        """Build the settings: ``uri`` (``--registry``), else ``$PIPESERVE_REGISTRY``, else ./mlflow.db.

        Args:
            uri: Registry URI or a path (a ``.db`` file, or a folder for ``<folder>/mlflow.db``).
            artifacts_destination: The server's ``--artifacts-destination``; else
                ``$PIPESERVE_REGISTRY_ARTIFACTS``.
            environ: Environment to read (default ``os.environ``).
            cwd: Folder relative paths are resolved against (default the current directory).

        Raises:
            ConfigError: The URI is not one MLflow's registry can use.
        """
        env = os.environ if environ is None else environ
        base = Path.cwd() if cwd is None else cwd
        raw = (uri or env.get(ENV_REGISTRY) or "").strip() or DEFAULT_DB
        normalized = _normalize(raw, base)
        artifact_root = None
        db = cls(uri=normalized).sqlite_path
        if db is not None:
            artifact_root = (db.parent / ARTIFACTS_DIR).as_uri()
        return cls(
            uri=normalized,
            artifact_root=artifact_root,
            artifacts_destination=(artifacts_destination or env.get(ENV_ARTIFACTS_DESTINATION) or None),
            actor=env.get(ENV_ACTOR) or _default_actor(),
        )


def _normalize(raw: str, base: Path) -> str:
    scheme = raw.split("://", 1)[0].split("+", 1)[0].lower() if "://" in raw else ""
    if scheme in ("http", "https"):
        return raw.rstrip("/")
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///"):
            raise ConfigError(
                f"Registry URI {raw!r} is not valid: use sqlite:///relative/path.db or sqlite:////abs/path.db.")
        path = raw[len("sqlite:///"):]
        if path in ("", ":memory:"):
            raise ConfigError(
                "An in-memory SQLite registry forgets everything at exit: give a file, e.g. sqlite:///mlflow.db.")
        return "sqlite:///" + str((base / path).resolve())
    if scheme in _DB_SCHEMES:
        return raw
    if scheme == "file":
        raise ConfigError(
            f"Registry URI {raw!r} is MLflow's file store, which MLflow has put in maintenance mode and which "
            "has no model registry of its own: use sqlite:///path/mlflow.db instead."
        )
    if scheme:
        raise ConfigError(
            f"Registry URI {raw!r} is not supported: use sqlite:///path/mlflow.db (the default is ./mlflow.db), "
            "a database URI (postgresql://, mysql://) or an MLflow tracking server (http(s)://host:port)."
        )
    path = (base / raw).resolve()
    if path.is_dir() or not path.suffix:
        path = path / DEFAULT_DB
    return "sqlite:///" + str(path)


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in containers without /etc/passwd entries
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
