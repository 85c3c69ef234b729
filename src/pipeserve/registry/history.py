"""The alias history pipeserve keeps, since MLflow keeps none: encoding, and the rollback target.

The history is a JSON list of :class:`AliasChange` entries in one registered-model tag
(:data:`HISTORY_TAG`), written only while the model's alias lock is held. ``seq`` only grows, so
a reader can tell whether anything moved since it last looked.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence

from pipeserve.errors import ConflictError, NotFound
from pipeserve.registry.base import CHAMPION, AliasChange

HISTORY_TAG = "pipeserve.alias_history"
# MLflow caps a registry tag value at 100,000 characters; an entry is ~200.
MAX_ENTRIES = 300


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def load(tags: Mapping[str, str]) -> list[AliasChange]:
    """The history stored in a registered model's tags (empty if none)."""
    raw = tags.get(HISTORY_TAG)
    if not raw:
        return []
    try:
        entries = json.loads(raw)
        if not isinstance(entries, list):
            raise TypeError(f"a JSON {type(entries).__name__}, not a list")
        return [AliasChange.from_dict(e) for e in entries]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConflictError(f"The alias history tag {HISTORY_TAG!r} is not pipeserve's JSON list ({exc}); it was "
                            "edited by hand. Restore it or delete the tag to start a new history.") from exc


def dump(entries: Sequence[AliasChange]) -> str:
    """Encode the newest :data:`MAX_ENTRIES` entries for the history tag."""
    kept = list(entries)[-MAX_ENTRIES:]
    return json.dumps([e.to_dict() for e in kept], separators=(",", ":"))


def next_seq(entries: Sequence[AliasChange]) -> int:
    return (entries[-1].seq if entries else 0) + 1


def champion_stack(entries: Sequence[AliasChange], alias: str = CHAMPION) -> list[str]:
    """Replay the history of ``alias``: the versions it held, the current one last.

    A move pushes its target (and first its origin, if the alias had been moved outside
    pipeserve to a version the history does not show, or the history was trimmed); a rollback
    pops. Removing the alias empties the stack.
    """
    stack: list[str] = []
    for e in (e for e in entries if e.alias == alias):
        if e.action == "rollback":
            if stack:
                stack.pop()
            if e.to_version and (not stack or stack[-1] != e.to_version):
                stack.append(e.to_version)
        elif e.to_version is None:
            stack = []
        else:
            for version in (e.from_version, e.to_version):
                if version and (not stack or stack[-1] != version):
                    stack.append(version)
    return stack


def rollback_target(name: str, entries: Sequence[AliasChange], current: str | None, alias: str = CHAMPION) -> str:
    """The version ``alias`` returns to on rollback: the one it held before the current one.

    Raises:
        ConflictError: The alias does not point where the history says (moved outside pipeserve).
        NotFound: The history records no earlier holder.
    """
    stack = champion_stack(entries, alias)
    if (stack[-1] if stack else None) != current:
        raise ConflictError(
            f"{name}@{alias} points to {current or 'nothing'} but pipeserve's history says "
            f"{stack[-1] if stack else 'nothing'}: it was moved outside pipeserve, so the previous {alias} is not "
            f"known. Set it explicitly with `pipeserve models promote {name} VERSION`."
        )
    if len(stack) < 2:
        raise NotFound(f"{name} has no earlier {alias} to roll back to (history: {len(entries)} moves); "
                       f"promote a version explicitly with `pipeserve models promote {name} VERSION`.")
    return stack[-2]


def last_move(entries: Sequence[AliasChange], alias: str) -> AliasChange | None:
    for e in reversed(entries):
        if e.alias == alias:
            return e
    return None


def conflict_message(name: str, alias: str, version: str | None, expected: str | None, current: str | None,
                     entries: Sequence[AliasChange]) -> str:
    """Why a compare-and-set on ``name@alias`` failed, with who moved it last."""
    last = last_move(entries, alias)
    who = ""
    if last is not None and last.to_version == current:
        who = f" (moved by {last.actor} at {last.at}, {last.action}{': ' + last.reason if last.reason else ''})"
    target = f"to {version}" if version else "off"
    return (f"Cannot move {name}@{alias} {target}: it points to {current or 'nothing'}, not "
            f"{expected or 'nothing'} as read before{who}. Someone else moved it since; re-read with "
            f"`pipeserve models show {name}@{alias}` and decide again.")
