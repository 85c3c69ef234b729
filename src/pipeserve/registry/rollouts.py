"""Where and when a version was rolled out, by whom, and how it went: version tags in the registry.

Each rollout (:mod:`pipeserve.rollout`) appends a :class:`RolloutRecord` to the version's tag
``pipeserve.rollouts`` (a JSON list, newest last, the newest :data:`MAX_RECORDS` kept) and writes
the latest one as flat tags MLflow's UI shows and its search filters on
(``tags.`pipeserve.rollout.outcome` = 'serving'``)::

    pipeserve.rollout.where    ml/iris on kind-prod (https://…)
    pipeserve.rollout.at       2026-12-01T15:40:11.123Z
    pipeserve.rollout.by       alice@laptop
    pipeserve.rollout.action   promote
    pipeserve.rollout.outcome  serving

Writes hold the model's alias lock, so two rollouts never lose each other's record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeserve.errors import one_line
from pipeserve.registry import history as hist
from pipeserve.registry.base import ModelRef

if TYPE_CHECKING:
    from pipeserve.registry.mlflow_registry import MlflowRegistry

ROLLOUTS_TAG = "pipeserve.rollouts"
LAST_PREFIX = "pipeserve.rollout."
MAX_RECORDS = 100


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout of a version to an InferenceService.

    Args:
        action: ``promote``, ``canary``, ``rollback`` or ``abort-canary``.
        outcome: ``serving`` (it serves all traffic), ``canary`` (part of it), ``canary-aborted``,
            ``replaced`` (another version took over from it) or ``failed`` (never Ready; the
            InferenceService was rolled back).
        namespace: The InferenceService's namespace.
        inference_service: Its name.
        cluster: The API server's URL.
        context: The kubeconfig context.
        mode: ``Standard`` or ``Knative``.
        at: ISO 8601 UTC time (filled in when recorded).
        actor: Who (``PIPESERVE_ACTOR``, else ``user@host``; filled in when recorded).
        traffic_percent: Percent of traffic the version gets after the rollout.
        other_version: The version it replaced (or, for ``replaced``, the one that replaced it).
        seconds: From the apply to rolled out and Ready.
        reason: Why it failed, or the reason given with the move.
    """

    action: str
    outcome: str
    namespace: str
    inference_service: str
    cluster: str | None = None
    context: str | None = None
    mode: str | None = None
    at: str = ""
    actor: str = ""
    traffic_percent: int | None = None
    other_version: str | None = None
    seconds: float | None = None
    reason: str = ""

    @property
    def where(self) -> str:
        on = f" on {self.context}" if self.context else ""
        return f"{self.namespace}/{self.inference_service}{on}" + (f" ({self.cluster})" if self.cluster else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RolloutRecord:
        return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__ if k in raw})


def record_rollout(registry: MlflowRegistry, name: str, version: str, record: RolloutRecord) -> RolloutRecord:
    """Append ``record`` to version ``name/version``'s rollout tags (stamping time and actor); return it.

    Raises:
        NotFound: no such model or version.
        RegistryError: the registry is unreachable or failed.
    """
    import dataclasses

    record = dataclasses.replace(record, at=record.at or hist.now(), actor=record.actor or registry.settings.actor,
                                 reason=one_line(record.reason, 1000))
    registry.get(ModelRef(name, version=str(version)))  # NotFound, in pipeserve's words
    with registry._locked(name) as client:
        mv = client.get_model_version(name, str(version))
        kept = [*_load(mv.tags or {}), record][-MAX_RECORDS:]
        client.set_model_version_tag(name, str(version), ROLLOUTS_TAG,
                                     json.dumps([r.to_dict() for r in kept], separators=(",", ":")))
        last = {"where": record.where, "at": record.at, "by": record.actor, "action": record.action,
                "outcome": record.outcome}
        for key, value in last.items():
            client.set_model_version_tag(name, str(version), LAST_PREFIX + key, value)
    return record


def rollouts(registry: MlflowRegistry, name: str, version: str) -> list[RolloutRecord]:
    """The recorded rollouts of ``name/version``, oldest first."""
    return _load(registry.get(ModelRef(name, version=str(version))).tags)


def _load(tags: dict[str, str]) -> list[RolloutRecord]:
    raw = tags.get(ROLLOUTS_TAG)
    if not raw:
        return []
    try:
        return [RolloutRecord.from_dict(r) for r in json.loads(raw)]
    except (ValueError, TypeError, AttributeError):
        return []  # edited by hand: start a new list rather than refuse to record
