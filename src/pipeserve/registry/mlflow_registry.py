"""The :class:`~pipeserve.registry.base.Registry` on MLflow's model registry.

Layout in MLflow, so MLflow's own client and UI read the same thing:

* one registered model per model name; versions numbered by MLflow;
* per version, a run (experiment ``pipeserve``) with the estimator's params, the held-out metrics,
  lineage tags, and the artifact ``model/<name>/…``: the Triton model repository folder, so
  ``models:/iris@champion`` downloads something ``pipeserve serve`` serves;
* version tags ``pipeserve.*``: task, estimator, metrics, params, data fingerprint, libraries,
  the sha256 of every file and of the card, and ``pipeserve.status`` (``ready`` is written last);
* aliases are MLflow aliases; their history is a registered-model tag (see :mod:`.history`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeserve.errors import ConflictError, IntegrityError, NotFound, PipeserveError, UserError
from pipeserve.modelcard import CARD_FILE, ModelCard, files_digest, read_card, sha256_file, verify_files
from pipeserve.registry import _mlflow as mf
from pipeserve.registry import history as hist
from pipeserve.registry.base import (
    ANY,
    CHALLENGER,
    CHAMPION,
    AliasChange,
    Expected,
    ModelRef,
    ModelVersion,
    check_alias,
    parse_ref,
)
from pipeserve.registry.locations import kserve_storage_uri
from pipeserve.registry.settings import RegistrySettings
from pipeserve.registry.stamping import restamp, single_model_dir, verify_download

ARTIFACT_PATH = "model"
LINEAGE_MLFLOW_RUN = "mlflow_run_id"


class MlflowRegistry:
    """Model versions and aliases in an MLflow registry (SQLite file, database, or tracking server).

    Args:
        settings: Where the registry is (see :meth:`RegistrySettings.resolve`).
    """

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self._client_: Any = None

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.settings.display_uri!r})"

    # -- reading ---------------------------------------------------------------------------
    def check(self) -> None:
        """Contact the registry (a new SQLite file gets MLflow's tables): fail now, not after training.

        Raises:
            RegistryError: The registry is unreachable or not an MLflow registry.
        """
        client = self._client()
        with mf.translated(self.settings, "reach the registry"):
            client.search_registered_models(max_results=1)

    def get(self, ref: str | ModelRef) -> ModelVersion:
        ref = parse_ref(ref)
        client = self._client()
        if ref.alias and ref.alias not in (self._registered_model(ref.name).aliases or {}):
            raise self._not_found(ref)
        with mf.translated(self.settings, f"read {ref}"):
            try:
                if ref.alias:
                    return mf.to_version(client.get_model_version_by_alias(ref.name, ref.alias))
                if ref.version:
                    return mf.to_version(client.get_model_version(ref.name, ref.version))
            except Exception as exc:
                if mf.error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    raise self._not_found(ref) from exc
                raise
        ready = [v for v in self.versions(ref.name) if v.status == mf.STATUS_READY]
        if not ready:
            raise NotFound(f"{ref.name} has no complete version in the registry {self.settings.display_uri}; "
                           "register one with `pipeserve models register MODEL_DIR`.")
        return ready[0]

    def versions(self, name: str) -> list[ModelVersion]:
        aliases = self.aliases(name)  # search results carry no aliases on every store
        with mf.translated(self.settings, f"list the versions of {name}"):
            found = self._client().search_model_versions(f"name = '{name}'")
        versions = (mf.to_version(mv) for mv in found)
        return sorted((dataclasses.replace(v, aliases=tuple(a for a, n in aliases.items() if n == v.version))
                       for v in versions), key=lambda v: -int(v.version))

    def aliases(self, name: str) -> dict[str, str]:
        return {a: str(v) for a, v in sorted((self._registered_model(name).aliases or {}).items())}

    def history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        entries = hist.load(self._registered_model(name).tags or {})
        return [e for e in entries if alias is None or e.alias == alias]

    # -- registering -----------------------------------------------------------------------
    def register(self, model_dir: Path, *, alias: str | None = None, actor: str | None = None,
                 reason: str = "") -> ModelVersion:
        """Register a packaged model folder; the registry assigns the version number.

        The folder is verified against its card, then a copy is re-stamped with the assigned
        number (Triton version folder, ``config.pbtxt``, card) and uploaded. If anything fails
        after MLflow created the version, the version, its run and its artifacts are deleted
        again; a version whose clean-up failed too stays ``pending``, which nothing serves.

        Args:
            model_dir: ``<repository>/<name>/`` as packaged by pipeserve (or its repository, if it
                holds one model).
            alias: Point this alias at the new version (e.g. ``challenger``).
            actor: Recorded in the alias history.
            reason: Recorded in the alias history.
        """
        src = single_model_dir(Path(model_dir))
        card = read_card(src)
        verify_files(src, card)
        if alias:
            check_alias(alias)
        client = self._client()
        name = card.name
        with mf.translated(self.settings, f"register {name}"):
            created_model = self._ensure_registered_model(name)
            run = client.create_run(self._experiment_id(), run_name=name, tags=_run_tags(card))
        run_id, version = run.info.run_id, None
        try:
            with mf.translated(self.settings, f"register {name}"):
                _log_run(client, run_id, card)
                mv = client.create_model_version(
                    name, source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}", run_id=run_id,
                    tags={**_version_tags(card), mf.TAG_STATUS: mf.STATUS_PENDING},
                    description=f"{card.task} {card.estimator.get('name', '')}, registered by pipeserve",
                    await_creation_for=0)  # pipeserve.status, not MLflow's, says when it is ready
                version = str(mv.version)
                self._upload(client, run_id, src, version)
                self._record_storage_uri(client, name, version)
                client.set_tag(run_id, "mlflow.runName", f"{name}-v{version}")
                client.set_model_version_tag(name, version, mf.TAG_STATUS, mf.STATUS_READY)
                client.set_terminated(run_id, "FINISHED")
        except BaseException as exc:
            left = self._undo_register(name, version, run, created_model)
            if isinstance(exc, PipeserveError) and left:
                raise type(exc)(f"{exc} {left}") from exc
            raise
        if alias:
            self.set_alias(name, alias, version, actor=actor, reason=reason, action="register")
        return self.get(ModelRef(name, version=version))

    def _upload(self, client: Any, run_id: str, src: Path, version: str) -> None:
        with tempfile.TemporaryDirectory(prefix="pipeserve-register-") as tmp:
            stamped = restamp(src, version, Path(tmp), lineage={LINEAGE_MLFLOW_RUN: run_id})
            client.log_artifacts(run_id, tmp, ARTIFACT_PATH)
            local = {f"{ARTIFACT_PATH}/{p.relative_to(tmp).as_posix()}": p.stat().st_size
                     for p in Path(tmp).rglob("*") if p.is_file()}
            remote = mf.list_files(client, run_id, ARTIFACT_PATH)
            if remote != local:
                missing = sorted(set(local) - set(remote)) or sorted(k for k in local if remote.get(k) != local[k])
                raise IntegrityError(
                    f"The upload of {stamped.name}/{version} is incomplete ({', '.join(missing[:3])}).")
            card_sha = sha256_file(Path(tmp) / stamped.name / CARD_FILE)
        for key, value in ((mf.TAG_FILES, json.dumps(stamped.files, sort_keys=True)),
                           (mf.TAG_FILES_DIGEST, files_digest(stamped.files)), (mf.TAG_CARD_SHA256, card_sha)):
            client.set_model_version_tag(stamped.name, version, key, value)

    def _undo_register(self, name: str, version: str | None, run: Any, created_model: bool) -> str:
        """Remove what a failed register wrote; return a sentence about anything left behind."""
        client = self._client()
        failed = []
        steps = [("version", lambda: version and client.delete_model_version(name, version)),
                 ("artifacts", lambda: _delete_artifacts(run.info.artifact_uri, self.settings)),
                 ("run", lambda: client.delete_run(run.info.run_id))]
        if created_model:
            steps.append(("model", lambda: not client.search_model_versions(f"name = '{name}'")
                          and client.delete_registered_model(name)))
        for what, step in steps:
            try:
                step()
            except Exception:
                failed.append(what)
        if not failed:
            return ""
        pending = ""
        if version and "version" in failed:
            pending = f" Version {version} stays marked pending (never served); delete it in MLflow."
        return f"Clean-up failed too ({', '.join(failed)}).{pending}"

    # -- aliases ---------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str | None, *, expected: Expected = ANY,
                  actor: str | None = None, reason: str = "", action: str = "set") -> AliasChange | None:
        check_alias(alias)
        if expected is not ANY and expected is not None:
            expected = str(expected)  # MLflow's REST client says "2", its SQL store 2
        if version is not None:
            version = self._ready(ModelRef(name, version=str(version))).version
        with self._locked(name) as client:
            model = client.get_registered_model(name)
            current = _alias(model, alias)
            entries = hist.load(model.tags or {})
            if expected is not ANY and current != expected:
                raise ConflictError(hist.conflict_message(name, alias, version, expected, current, entries))
            if current == version:
                return None
            change = self._move(client, name, alias, current, version, entries, action, actor, reason)
            if action == "promote" and alias == CHAMPION and _alias(model, CHALLENGER) == version:
                self._move(client, name, CHALLENGER, version, None, [*entries, change], action, actor, reason)
            return change

    def promote(self, name: str, version: str, *, expected: Expected = ANY, actor: str | None = None,
                reason: str = "") -> AliasChange | None:
        return self.set_alias(name, CHAMPION, str(version), expected=expected, actor=actor, reason=reason,
                              action="promote")

    def rollback(self, name: str, *, actor: str | None = None, reason: str = "") -> AliasChange:
        with self._locked(name) as client:
            model = client.get_registered_model(name)
            current = _alias(model, CHAMPION)
            entries = hist.load(model.tags or {})
            target = hist.rollback_target(name, entries, current)
            self._ready(ModelRef(name, version=target))
            return self._move(client, name, CHAMPION, current, target, entries, "rollback", actor, reason)

    def _move(self, client: Any, name: str, alias: str, current: str | None, version: str | None,
              entries: list[AliasChange], action: str, actor: str | None, reason: str) -> AliasChange:
        """Move the alias and append the history entry (lock held), then re-read to prove both landed."""
        change = AliasChange(seq=hist.next_seq(entries), alias=alias, action=action, from_version=current,
                             to_version=version, at=hist.now(), actor=actor or self.settings.actor, reason=reason)
        self._write_alias(client, name, alias, version)
        try:
            client.set_registered_model_tag(name, hist.HISTORY_TAG, hist.dump([*entries, change]))
        except BaseException:
            with contextlib.suppress(Exception):  # put the alias back: no move without its history entry
                self._write_alias(client, name, alias, current)
            raise
        after = client.get_registered_model(name)
        recorded = hist.load(after.tags or {})
        if _alias(after, alias) != version or not recorded or recorded[-1].seq != change.seq:
            raise ConflictError(
                f"{name}@{alias} was changed by another writer while pipeserve moved it to {version} (now "
                f"{_alias(after, alias) or 'nothing'}); an MLflow client outside pipeserve moves aliases without "
                f"its lock. Check `pipeserve models history {name}` and set it again.")
        return change

    def _write_alias(self, client: Any, name: str, alias: str, version: str | None) -> None:
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Any:
        client = self._client()
        self._registered_model(name)
        with mf.translated(self.settings, f"move an alias of {name}"), mf.alias_lock(client, self.settings, name):
            yield client

    # -- artifacts -------------------------------------------------------------------------
    def download(self, ref: str | ModelRef, dest: Path) -> Path:
        """Download a version into the model repository ``dest`` as ``dest/<name>/``, verified.

        Raises:
            IntegrityError: A file does not match the card, or the card not the one registered.
        """
        mv = self._ready(parse_ref(ref))
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=f".{mv.name}.download-") as tmp:
            with mf.translated(self.settings, f"download {mv.name}/{mv.version}"):
                uri = self._client().get_model_version_download_uri(mv.name, mv.version)
                _artifact_repo(uri, self.settings).download_artifacts("", tmp)
            got = Path(tmp) / mv.name
            card = verify_download(got, mv.name, mv.version, mv.card_sha256)
            final = dest / card.name
            if final.exists():
                final.rename(Path(tmp) / "previous")
            got.rename(final)
        return final

    def storage_uri(self, ref: str | ModelRef) -> str:
        mv = self._ready(parse_ref(ref))
        recorded = mv.tags.get(TAG_STORAGE_URI)
        if recorded and not self.settings.artifacts_destination:
            return recorded  # resolved when it was registered, where the artifacts destination was known
        with mf.translated(self.settings, f"locate {mv.name}/{mv.version}"):
            source = self._client().get_model_version_download_uri(mv.name, mv.version)
        return kserve_storage_uri(source, f"{mv.name}/{mv.version}", self.settings.artifacts_destination)

    def _record_storage_uri(self, client: Any, name: str, version: str) -> None:
        """Keep the bucket path on the version, so later readers need not know the artifacts destination."""
        source = client.get_model_version_download_uri(name, version)
        try:
            uri = kserve_storage_uri(source, f"{name}/{version}", self.settings.artifacts_destination)
        except UserError:
            return  # a local store, or the destination unknown here: nothing a cluster can fetch to record
        client.set_model_version_tag(name, version, TAG_STORAGE_URI, uri)

    # -- helpers ---------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._client_ is None:
            mf.import_mlflow(self.settings)
            from mlflow import MlflowClient

            db = self.settings.sqlite_path
            with mf.translated(self.settings, "open the registry"):
                if db is not None:
                    db.parent.mkdir(parents=True, exist_ok=True)
                self._client_ = MlflowClient(tracking_uri=self.settings.uri, registry_uri=self.settings.uri)
        return self._client_

    def _registered_model(self, name: str) -> Any:
        ref = parse_ref(name)
        if ref.alias or ref.version:
            raise UserError(f"Expected a model name, got {name!r}; drop the @ALIAS or /VERSION.")
        client = self._client()
        with mf.translated(self.settings, f"read {name}"):
            try:
                return client.get_registered_model(name)
            except Exception as exc:
                if mf.error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    raise NotFound(f"No model {name!r} in the registry {self.settings.display_uri}; register one with "
                                   "`pipeserve models register MODEL_DIR`.") from exc
                raise

    def _ensure_registered_model(self, name: str) -> bool:
        client = self._client()
        try:
            client.create_registered_model(name, tags={"pipeserve.managed": "true"},
                                           description="Registered by pipeserve; aliases: champion, challenger.")
            return True
        except Exception as exc:
            if mf.error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            return False

    def _experiment_id(self) -> str:
        client = self._client()
        exp = client.get_experiment_by_name(self.settings.experiment)
        if exp is None:
            try:
                return client.create_experiment(self.settings.experiment, artifact_location=
                                                None if self.settings.is_remote else self.settings.artifact_root)
            except Exception as exc:
                if mf.error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(self.settings.experiment)
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _ready(self, ref: ModelRef) -> ModelVersion:
        mv = self.get(ref)
        if mv.status != mf.STATUS_READY:
            why = ("its registration did not finish; register the model again." if mv.status == mf.STATUS_PENDING
                   else "it was not registered by pipeserve (no card hashes).")
            raise UserError(f"{mv.name}/{mv.version} is {mv.status!r}, not ready: {why}")
        return mv

    def _not_found(self, ref: ModelRef) -> NotFound:
        model = self._registered_model(ref.name)
        if ref.alias:
            have = ", ".join(f"{a}→{v}" for a, v in sorted((model.aliases or {}).items())) or "none"
            return NotFound(f"{ref.name} has no alias {ref.alias!r} (aliases: {have}).")
        have = ", ".join(v.version for v in reversed(self.versions(ref.name))) or "none"
        return NotFound(f"{ref.name} has no version {ref.version} (versions: {have}).")


def _alias(model: Any, alias: str) -> str | None:
    value = (model.aliases or {}).get(alias)
    return None if value is None else str(value)


# Where KServe fetches the version (its bucket path), recorded at registration when it is known.
TAG_STORAGE_URI = "pipeserve.storage_uri"


def _run_tags(card: ModelCard) -> dict[str, str]:
    tags = {"pipeserve.model": card.name, mf.TAG_TASK: card.task,
            mf.TAG_DATA_FINGERPRINT: str(card.data.get("fingerprint", "")),
            mf.TAG_DATA_SOURCE: str(card.data.get("source", ""))}
    tags.update({f"pipeserve.library.{lib}": ver for lib, ver in card.libraries.items()})
    tags.update({f"pipeserve.lineage.{k}": str(v) for k, v in card.lineage.items()})
    return tags


def _log_run(client: Any, run_id: str, card: ModelCard) -> None:
    from mlflow.entities import Metric, Param

    now_ms = int(time.time() * 1000)
    params = {"estimator": card.estimator.get("name", ""), **card.estimator.get("params", {})}
    client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, 0) for k, v in sorted(card.metrics.items())],
                     params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])


def _version_tags(card: ModelCard) -> dict[str, str]:
    return {mf.TAG_TASK: card.task, mf.TAG_ESTIMATOR: str(card.estimator.get("name", "")),
            mf.TAG_METRICS: json.dumps(card.metrics, sort_keys=True),
            mf.TAG_PARAMS: json.dumps(card.estimator.get("params", {}), sort_keys=True, default=str),
            mf.TAG_DATA_FINGERPRINT: str(card.data.get("fingerprint", "")),
            mf.TAG_DATA_SOURCE: str(card.data.get("source", "")),
            mf.TAG_LIBRARIES: json.dumps(card.libraries, sort_keys=True)}


def _artifact_repo(uri: str, settings: RegistrySettings) -> Any:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri, tracking_uri=settings.uri)


def _delete_artifacts(artifact_uri: str, settings: RegistrySettings) -> None:
    try:
        _artifact_repo(f"{artifact_uri}/{ARTIFACT_PATH}", settings).delete_artifacts()
    except Exception as exc:
        if "not found" not in str(exc).lower() and not isinstance(exc, FileNotFoundError):
            raise

