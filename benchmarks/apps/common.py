"""Helpers shared by the baseline apps: load the fitted estimators of a pipeserve model repository.

The baselines serve the *same* fitted estimator as pipeserve (read from ``model.skops``), so the
benchmark compares servers, not models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_FILE = "model-card.json"


def load_estimators(repo: str | Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Return ``{model name: (fitted estimator, model card dict)}`` for every model in ``repo``.

    Args:
        repo: A model directory or a model repository written by pipeserve's packaging.
    """
    import skops.io

    repo = Path(repo)
    dirs = [repo] if (repo / CARD_FILE).is_file() else sorted(p.parent for p in repo.glob(f"*/{CARD_FILE}"))
    if not dirs:
        raise SystemExit(f"no {CARD_FILE} in {repo} or its sub-folders")
    out = {}
    for model_dir in dirs:
        card = json.loads((model_dir / CARD_FILE).read_text())
        path = next(model_dir.glob("*/model.skops"))
        # Our own file, written by our packaging: trust exactly the types it lists.
        estimator = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
        out[card["name"]] = (estimator, card)
    return out
