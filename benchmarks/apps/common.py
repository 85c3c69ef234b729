"""Helpers shared by the baseline apps: load the fitted estimators of a pipeserve model repository.

The baselines serve the *same* fitted estimator as pipeserve (read from ``model.skops``), so the
benchmark compares servers, not models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_estimators(repo: str | Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Return ``{model name: (fitted estimator, model card dict)}`` for every model in ``repo``.

    Args:
        repo: A model directory or a model repository written by pipeserve's packaging.
    """
    from pipeserve.modelcard import SKOPS_FILE, find_model_dirs, read_card
    from pipeserve.packaging import load_estimator

    out = {}
    for model_dir in find_model_dirs(Path(repo)):
        card = read_card(model_dir)
        estimator = load_estimator(model_dir / card.version / SKOPS_FILE)  # the same allow-list as pipeserve
        out[card.name] = (estimator, card.to_dict())
    return out


def baseline_options(description: str) -> tuple[Any, dict[str, Any]]:
    """Parse ``REPO --host --port`` (the baselines' shared CLI) and load the repository's estimators."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("repo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    opts = parser.parse_args()
    return opts, {name: est for name, (est, _card) in load_estimators(opts.repo).items()}


async def serve_lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan scope: accept startup and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

