"""Kubeflow Pipelines components: thin wrappers over the pipeserve library.

One module per step holds the function that runs in the step's pod (:mod:`.data`, the
hyperparameter fan-out :mod:`.grid`, :mod:`.scoring`, :mod:`.selection`, then :mod:`.training`,
:mod:`.evaluation`, :mod:`.packaging`, the registry's :mod:`.registration`, :mod:`.gating`,
:mod:`.promotion`, :mod:`.emit` and :mod:`.deployment`); :mod:`.runtime` turns them into KFP
components for an image. The first step, load_data, hands the pipeserve library to the others as
its ``library`` output artifact; each other function takes it as ``library`` and puts it first on
``sys.path`` before it imports pipeserve::

    from pipeserve.components import build_components, ComponentRuntime
    steps = build_components(ComponentRuntime.prebuilt("ghcr.io/pipeserve/pipeserve-runtime:0.1.0"))

``pipeserve.components.load_data`` (and ``plan_grid``, ``score_candidate``, ``select_candidate``,
``train``, ``evaluate``, ``package``, ``register``, ``gate``, ``promote``,
``emit_inference_service``, ``deploy``) are the components as compiled into
``pipelines/train_and_serve.yaml``: stock Python image, pinned packages, the library embedded in
load_data. They are built on first use, not at import.
"""

from __future__ import annotations

import functools
from typing import Any

from pipeserve.components.runtime import BASE_IMAGE, ComponentRuntime, Components, build_components

__all__ = [
    "BASE_IMAGE",
    "ComponentRuntime",
    "Components",
    "build_components",
    "deploy",
    "emit_inference_service",
    "evaluate",
    "gate",
    "load_data",
    "package",
    "plan_grid",
    "promote",
    "register",
    "score_candidate",
    "select_candidate",
    "train",
]


@functools.cache
def _stock() -> Components:
    return build_components(ComponentRuntime())


def __getattr__(name: str) -> Any:
    if name in Components._fields:
        return getattr(_stock(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
