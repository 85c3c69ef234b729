"""Where predictor pods may run: tolerations and node selectors, parsed from CLI text and checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeserve.kube.kserve import LABEL_VALUE, QUALIFIED_NAME, DeploymentConfigError

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


@dataclass(frozen=True)
class Toleration:
    """A pod toleration (Kubernetes ``core/v1`` Toleration).

    Args:
        key: Taint key, e.g. ``nvidia.com/gpu``.
        operator: ``Exists`` or ``Equal``.
        value: Taint value (with ``Equal`` only).
        effect: ``NoSchedule``, ``PreferNoSchedule``, ``NoExecute`` or empty for all effects.
    """

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """Parse ``key[=value][:effect]`` (kubectl taint syntax); no value means ``Exists``."""
        effect: str | None = None
        if ":" in text:
            text, effect = text.rsplit(":", 1)
        if "=" in text:
            key, value = text.split("=", 1)
            return cls(key=key, operator="Equal", value=value, effect=effect or None)
        return cls(key=text, operator="Exists", effect=effect or None)


def node_selector_problem(selector: Mapping[str, str] | None) -> str | None:
    for key, value in (selector or {}).items():
        if not QUALIFIED_NAME.match(key) or not LABEL_VALUE.match(str(value)) or len(str(value)) > 63:
            return f"Node selector {key}={value} is not a valid label key/value pair."
    return None


def tolerations_problem(tolerations: Sequence[Toleration] | None) -> str | None:
    for tol in tolerations or ():
        if not isinstance(tol, Toleration):
            return f"Tolerations must be Toleration objects; got {tol!r} (use DeploymentSpec.from_options)."
        if tol.operator not in ("Exists", "Equal"):
            return f"Toleration operator must be Exists or Equal; got {tol.operator!r}."
        if tol.effect not in (None, *EFFECTS):
            return f"Toleration effect must be NoSchedule, PreferNoSchedule or NoExecute; got {tol.effect!r}."
        if tol.operator == "Exists" and tol.value:
            return f"Toleration {tol.key}: operator Exists takes no value; use Equal or drop the value."
    return None


def parse_node_selector(raw: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeploymentConfigError(f"Node selector {item!r} must look like KEY=VALUE, "
                                        "e.g. nvidia.com/gpu.present=true.")
        out[key] = value
    return out


def parse_toleration(raw: str | Mapping[str, Any] | Toleration) -> Toleration:
    if isinstance(raw, Toleration):
        return raw
    if isinstance(raw, Mapping):
        unknown = set(raw) - _TOLERATION_KEYS
        if unknown or "key" not in raw:
            raise DeploymentConfigError(
                f"Toleration {dict(raw)!r} must have a 'key' and only the fields key, operator, value, effect."
            )
        return Toleration(
            key=raw["key"], operator=raw.get("operator", "Exists"), value=raw.get("value"), effect=raw.get("effect")
        )
    if not raw:
        raise DeploymentConfigError("An empty toleration was given; use KEY[=VALUE][:EFFECT].")
    return Toleration.parse(raw)
