"""What each serving runtime can load: image tag → ONNX Runtime → newest ONNX opsets and IR version.

An ONNX file records the IR version and the operator-set versions it was written for, and an ONNX
Runtime older than those refuses it outright (``Unsupported model IR version: 10, max supported IR
version: 9``). KServe 0.21's ``kserve-tritonserver`` runs Triton 23.05, whose ONNX Runtime is 1.15,
while skl2onnx stamps the newest opset it knows. So packaging converts *for the runtime that will
serve* (:func:`onnx_target`), the model card records what the file needs (:func:`requirements`),
and the manifest builder refuses a runtime that cannot load it (:func:`check_loadable`).

Sources of the tables: the ONNX Runtime version each Triton release compiles in (``build.py`` of
triton-inference-server/server on each ``rYY.MM`` branch), and what each ONNX Runtime release
loads and runs (measured on its PyPI wheel; ONNX Runtime's compatibility page for 1.14-1.16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeserve.errors import ConfigError

ONNX_DOMAIN = "ai.onnx"  # written "" in an ONNX file's opset_import
ML_DOMAIN = "ai.onnx.ml"


@dataclass(frozen=True, order=True)
class OnnxLimits:
    """The newest ONNX an ONNX Runtime release loads.

    Args:
        opset: Newest ``ai.onnx`` operator set.
        ml_opset: Newest ``ai.onnx.ml`` operator set.
        ir_version: Newest ONNX IR version.
    """

    opset: int
    ml_opset: int
    ir_version: int

    def covers(self, needs: OnnxLimits) -> bool:
        return needs.opset <= self.opset and needs.ml_opset <= self.ml_opset and needs.ir_version <= self.ir_version


# ONNX Runtime minor version -> the newest ONNX it loads *and runs*. Measured by loading generated
# models into each PyPI wheel (the load errors name the ceilings); 1.14-1.16 also match ORT's
# compatibility page. Two rows are below what the loader accepts, because kernels are missing:
# 1.15 parses opset 19 but has no Identity(19); 1.18-1.20 parse ai.onnx.ml 5 but have no
# TreeEnsemble(5), which scikit-learn's tree models need.
ONNXRUNTIME_LIMITS: dict[str, OnnxLimits] = {
    "1.14": OnnxLimits(18, 3, 8),
    "1.15": OnnxLimits(18, 3, 9),
    "1.16": OnnxLimits(19, 3, 9),
    "1.17": OnnxLimits(20, 4, 9),
    "1.18": OnnxLimits(21, 4, 10),
    "1.19": OnnxLimits(21, 4, 10),
    "1.20": OnnxLimits(21, 4, 10),
    "1.21": OnnxLimits(22, 5, 10),
    "1.22": OnnxLimits(22, 5, 10),
    "1.23": OnnxLimits(23, 5, 11),
    "1.24": OnnxLimits(25, 5, 13),
    "1.25": OnnxLimits(26, 5, 13),
    "1.26": OnnxLimits(26, 5, 13),
    "1.27": OnnxLimits(26, 5, 13),
    "1.28": OnnxLimits(26, 5, 13),
    "1.29": OnnxLimits(26, 5, 13),
    "1.30": OnnxLimits(26, 5, 13),
    "1.31": OnnxLimits(26, 5, 13),
    "1.32": OnnxLimits(28, 5, 14),
}

TRITON = "kserve-tritonserver"
PIPESERVE_RUNTIME = "pipeserve-runtime"
SKLEARNSERVER = "kserve-sklearnserver"
# Serving target (what users choose) -> the (Cluster)ServingRuntime it pins.
TARGET_RUNTIMES = {
    "triton-gpu": TRITON,
    "triton-cpu": TRITON,
    "pipeserve": PIPESERVE_RUNTIME,
    "sklearnserver": SKLEARNSERVER,
}
# Runtime -> image tag (release part before "-py3") -> the ONNX Runtime version it ships.
RUNTIME_ONNXRUNTIME: dict[str, dict[str, str]] = {
    # The ONNX Runtime that build.py of each Triton release branch (rYY.MM) compiles in.
    TRITON: {
        "23.05": "1.15.0", "23.06": "1.15.0", "23.07": "1.15.1", "23.08": "1.15.1", "23.09": "1.16.0",
        "23.10": "1.16.0", "23.11": "1.16.3", "23.12": "1.16.3", "24.01": "1.16.3", "24.02": "1.16.3",
        "24.03": "1.17.2", "24.04": "1.17.3", "24.05": "1.18.0", "24.06": "1.18.0", "24.07": "1.18.1",
        "24.08": "1.19.0", "24.09": "1.19.2", "24.10": "1.19.2", "24.11": "1.19.2", "24.12": "1.20.1",
        "25.01": "1.20.1", "25.02": "1.20.1", "25.03": "1.21.0", "25.04": "1.21.0", "25.05": "1.22.0",
        "25.06": "1.22.0", "25.07": "1.22.0", "25.08": "1.23.0", "25.09": "1.23.0", "25.10": "1.23.1",
        "25.11": "1.23.2", "25.12": "1.23.2", "26.01": "1.23.2", "26.02": "1.24.1", "26.03": "1.24.2",
        "26.04": "1.24.4", "26.05": "1.24.4", "26.06": "1.24.4", "26.07": "1.27.0",
    },
    # Our own image installs the onnxruntime pinned in pyproject.toml.
    PIPESERVE_RUNTIME: {"0.1.0": "1.32.0"},
}
# What a stock install of KServe 0.21 runs (config/runtimes/kustomization.yaml), and our image.
DEFAULT_RUNTIME_VERSION = {TRITON: "23.05-py3", PIPESERVE_RUNTIME: "0.1.0"}
# skl2onnx 1.20 converts up to this ai.onnx opset (skl2onnx.get_latest_tested_opset_version()).
_CONVERTER_MAX_OPSET = 22


class RuntimeIncompatible(ConfigError):
    """The serving runtime's ONNX Runtime cannot load the packaged ONNX file."""


@dataclass(frozen=True)
class OnnxTarget:
    """The runtime a model is converted for.

    Args:
        runtime: (Cluster)ServingRuntime name, e.g. ``kserve-tritonserver``.
        runtime_version: Its image tag, e.g. ``23.05-py3``.
        onnxruntime: The ONNX Runtime version inside that image.
        limits: The newest ONNX that ONNX Runtime loads.
    """

    runtime: str
    runtime_version: str
    onnxruntime: str
    limits: OnnxLimits

    @property
    def label(self) -> str:
        return f"{self.runtime}:{self.runtime_version}"

    def converter_opsets(self) -> dict[str, int]:
        """skl2onnx's ``target_opset`` for this runtime."""
        return {"": min(self.limits.opset, _CONVERTER_MAX_OPSET), ML_DOMAIN: self.limits.ml_opset}


def runtime_for_target(target: str) -> str:
    """The (Cluster)ServingRuntime a serving target pins."""
    try:
        return TARGET_RUNTIMES[target]
    except KeyError:
        raise ConfigError(f"Unknown target {target!r}; valid targets are: {', '.join(TARGET_RUNTIMES)}.") from None


def loads_onnx(runtime: str) -> bool:
    """Whether the runtime serves the repository's ONNX file (sklearnserver unpickles instead)."""
    return runtime in RUNTIME_ONNXRUNTIME


def onnx_target(runtime: str = TRITON, runtime_version: str | None = None) -> OnnxTarget:
    """The ONNX limits of ``runtime`` at image tag ``runtime_version`` (None: its default tag).

    A runtime that loads no ONNX (``kserve-sklearnserver``) gets the default Triton target, so the
    repository's ONNX file stays servable by stock KServe.

    Raises:
        ConfigError: An image tag the table does not know.
    """
    if not loads_onnx(runtime):
        return onnx_target(TRITON, None)
    tag = runtime_version or DEFAULT_RUNTIME_VERSION[runtime]
    release = tag.split("-", 1)[0]
    known = RUNTIME_ONNXRUNTIME[runtime]
    if release not in known:
        raise ConfigError(
            f"Unknown {runtime} image tag {tag!r}: pipeserve knows which ONNX Runtime ships in "
            f"{', '.join(sorted(known))} only, so it cannot tell which ONNX that image loads. "
            f"Use one of those tags (e.g. --runtime-version {DEFAULT_RUNTIME_VERSION[runtime]})."
        )
    ort = known[release]
    return OnnxTarget(runtime, tag, ort, ONNXRUNTIME_LIMITS[_minor(ort)])


def requirements(model: Any) -> dict[str, Any]:
    """What an ``onnx.ModelProto`` needs: the model card's ``onnx`` entry.

    Returns:
        ``{"ir_version", "opsets": {"ai.onnx": n, "ai.onnx.ml": m}, "min_onnxruntime"}``;
        ``min_onnxruntime`` is the oldest ONNX Runtime in the table that loads it.
    """
    opsets: dict[str, int] = {}
    for entry in model.opset_import:
        domain = entry.domain or ONNX_DOMAIN
        opsets[domain] = max(opsets.get(domain, 0), int(entry.version))
    needs = _needs({"ir_version": int(model.ir_version), "opsets": opsets})
    oldest = next((v for v, lim in sorted(ONNXRUNTIME_LIMITS.items(), key=lambda kv: _key(kv[0])) if lim.covers(needs)),
                  None)
    return {"ir_version": int(model.ir_version), "opsets": dict(sorted(opsets.items())),
            "min_onnxruntime": oldest or "unknown"}


def check_loadable(onnx_needs: dict[str, Any], target: OnnxTarget, model: str) -> None:
    """Refuse a model whose ONNX file ``target``'s ONNX Runtime cannot load.

    Args:
        onnx_needs: The model card's ``onnx`` entry (see :func:`requirements`).
        target: The runtime that will serve it.
        model: ``name vN`` of the model, for the message.

    Raises:
        RuntimeIncompatible: one line naming both versions and the fix.
    """
    if not onnx_needs:
        raise RuntimeIncompatible(
            f"Model {model} was packaged before pipeserve recorded which ONNX Runtime can load it, so "
            f"{target.label} (ONNX Runtime {target.onnxruntime}) may refuse it; re-package it with "
            f"`pipeserve run --runtime-version {target.runtime_version}`."
        )
    needs = _needs(onnx_needs)
    if target.limits.covers(needs):
        return
    raise RuntimeIncompatible(
        f"Model {model} needs ONNX IR {needs.ir_version}, opset {needs.opset}, ai.onnx.ml {needs.ml_opset} "
        f"(ONNX Runtime >= {onnx_needs.get('min_onnxruntime', '?')}), but {target.label} runs ONNX Runtime "
        f"{target.onnxruntime} (IR <= {target.limits.ir_version}, opset <= {target.limits.opset}, "
        f"ai.onnx.ml <= {target.limits.ml_opset}). Re-package for it (`pipeserve run --runtime-version "
        f"{target.runtime_version}`) or serve with a newer image (--runtime-version)."
    )


def _needs(entry: dict[str, Any]) -> OnnxLimits:
    opsets = entry.get("opsets", {})
    return OnnxLimits(int(opsets.get(ONNX_DOMAIN, 0)), int(opsets.get(ML_DOMAIN, 0)), int(entry["ir_version"]))


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))
