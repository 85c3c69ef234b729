"""MLflow plumbing for :mod:`pipeserve.registry.mlflow_registry`: lazy import, error mapping, the lock.

MLflow is imported on first use only (about 1-2 s), after its telemetry is turned off.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import random
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from pipeserve.errors import ConflictError, NotFound, PipeserveError, RegistryError, UserError, one_line
from pipeserve.registry.base import ModelVersion
from pipeserve.registry.settings import RegistrySettings

LOCK_PREFIX = "_pipeserve_lock."
# Version tags pipeserve writes (registered-model tags: see history.HISTORY_TAG).
TAG_STATUS = "pipeserve.status"
TAG_TASK = "pipeserve.task"
TAG_ESTIMATOR = "pipeserve.estimator"
TAG_METRICS = "pipeserve.metrics"
TAG_PARAMS = "pipeserve.params"
TAG_DATA_FINGERPRINT = "pipeserve.data_fingerprint"
TAG_DATA_SOURCE = "pipeserve.data_source"
TAG_LIBRARIES = "pipeserve.libraries"
TAG_FILES = "pipeserve.files"
TAG_FILES_DIGEST = "pipeserve.files_sha256"
TAG_CARD_SHA256 = "pipeserve.card_sha256"
STATUS_PENDING = "pending"
STATUS_READY = "ready"
_CONNECTION = re.compile(
    r"Connection refused|Failed to establish|Max retries exceeded|timed out|Name or service not known|"
    r"nodename nor servname|Temporary failure in name resolution|unable to open database file|"
    r"RemoteDisconnected|Connection aborted|Connection reset", re.IGNORECASE)
_RETRYABLE = re.compile(r"database is locked", re.IGNORECASE)


def import_mlflow(settings: RegistrySettings) -> Any:
    """Import MLflow with telemetry off and HTTP retries that fail fast; return the module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow prints "View run … at: URL" to stdout for a tracking server; stdout is ours (--output json).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.http_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.http_timeout)))
    import mlflow

    return mlflow


def error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def translate(exc: BaseException, settings: RegistrySettings, action: str) -> PipeserveError:
    """Turn an MLflow/SQLAlchemy/requests failure into one pipeserve error with a one-line message."""
    if isinstance(exc, PipeserveError):
        return exc
    full = " ".join(str(exc).split())
    text = one_line(full)
    uri = settings.display_uri
    network = isinstance(exc, ConnectionError) or type(exc).__module__.startswith(("requests", "urllib3"))
    if network or _CONNECTION.search(full):
        reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)|(unable to open database file)|(timed out)", full)
        why = next((g for g in (reason.groups() if reason else ()) if g), "no answer")
        return RegistryError(f"MLflow registry {uri} is unreachable ({why.strip()}) while trying to {action}. "
                             "Start it, or point --registry / PIPESERVE_REGISTRY at a running one.")
    code = error_code(exc)
    text = re.sub(r"^(RESOURCE_DOES_NOT_EXIST|INVALID_PARAMETER_VALUE|RESOURCE_ALREADY_EXISTS): ", "", text)
    if code == "RESOURCE_DOES_NOT_EXIST":
        return NotFound(f"{text} (registry {uri}).")
    if code == "RESOURCE_ALREADY_EXISTS":
        return ConflictError(f"{text} (registry {uri}).")
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
        return UserError(f"MLflow refused to {action}: {text}")
    return RegistryError(f"MLflow registry {uri} failed to {action}: {text}")


@contextlib.contextmanager
def translated(settings: RegistrySettings, action: str) -> Iterator[None]:
    """Run MLflow calls; re-raise any failure as a pipeserve error (cause chained)."""
    try:
        yield
    except PipeserveError:
        raise
    except Exception as exc:
        raise translate(exc, settings, action) from exc


def iso(ms: int | None) -> str:
    if not ms:
        return ""
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_tag(tags: dict[str, str], key: str) -> Any:
    try:
        return json.loads(tags[key]) if key in tags else {}
    except ValueError:
        return {}


def to_version(mv: Any) -> ModelVersion:
    """An MLflow ``ModelVersion`` entity as pipeserve's :class:`ModelVersion`."""
    tags = dict(mv.tags or {})
    return ModelVersion(
        name=mv.name,
        version=str(mv.version),
        aliases=tuple(sorted(mv.aliases or ())),
        status=tags.get(TAG_STATUS, "external"),
        source=mv.source or "",
        run_id=mv.run_id or None,
        created_at=iso(mv.creation_timestamp),
        task=tags.get(TAG_TASK),
        estimator=tags.get(TAG_ESTIMATOR),
        metrics={k: float(v) for k, v in _json_tag(tags, TAG_METRICS).items()},
        params=_json_tag(tags, TAG_PARAMS),
        data_fingerprint=tags.get(TAG_DATA_FINGERPRINT),
        files=_json_tag(tags, TAG_FILES),
        card_sha256=tags.get(TAG_CARD_SHA256),
        tags=tags,
    )


def list_files(client: Any, run_id: str, path: str) -> dict[str, int]:
    """Every artifact file under ``path`` of a run, with its size."""
    out: dict[str, int] = {}
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.update(list_files(client, run_id, info.path))
        else:
            out[info.path] = int(info.file_size or 0)
    return out


@contextlib.contextmanager
def alias_lock(client: Any, settings: RegistrySettings, name: str) -> Iterator[None]:
    """Hold the alias lock of model ``name`` (cross-process, cross-host, on every MLflow backend).

    The lock is a registered model named ``_pipeserve_lock.<name>``: creating a registered model
    is MLflow's one insert-if-absent operation (a unique key in its database), so exactly one
    writer succeeds. A lock older than ``settings.lock_ttl`` is taken to be abandoned by a crashed
    writer and broken.

    Raises:
        ConflictError: Another writer held the lock for longer than ``settings.lock_wait``.
    """
    lock = LOCK_PREFIX + name
    token = uuid.uuid4().hex
    deadline = time.monotonic() + settings.lock_wait
    delay = 0.02
    while True:
        try:
            client.create_registered_model(
                lock, tags={"pipeserve.lock": token, "pipeserve.lock.actor": settings.actor},
                description=f"pipeserve: lock on the aliases of {name!r} while they move (deleted when done; "
                f"safe to delete if older than {settings.lock_ttl:.0f} s).")
            break
        except Exception as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS" and not _RETRYABLE.search(str(exc)):
                raise
        holder = _holder(client, lock)
        if holder is not None and time.time() * 1000 - holder.creation_timestamp > settings.lock_ttl * 1000:
            _break(client, lock, holder)
            continue
        if time.monotonic() > deadline:
            who = holder.tags.get("pipeserve.lock.actor", "?") if holder is not None else "?"
            since = iso(holder.creation_timestamp) if holder is not None else "?"
            raise ConflictError(
                f"The aliases of {name} are being moved by {who} (lock {lock!r} held since {since}); gave up after "
                f"{settings.lock_wait:.0f} s. Try again; a lock left by a crashed process expires after "
                f"{settings.lock_ttl:.0f} s.")
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        holder = _holder(client, lock)
        if holder is not None and holder.tags.get("pipeserve.lock") == token:
            client.delete_registered_model(lock)


def _holder(client: Any, lock: str) -> Any:
    try:
        return client.get_registered_model(lock)
    except Exception as exc:
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _break(client: Any, lock: str, stale: Any) -> None:
    """Delete an abandoned lock, unless it was replaced by a fresh one meanwhile."""
    again = _holder(client, lock)
    if again is not None and again.tags.get("pipeserve.lock") == stale.tags.get("pipeserve.lock"):
        with contextlib.suppress(Exception):
            client.delete_registered_model(lock)
