"""Hyperparameter search: a grid of candidates, each scored by cross-validation on the training split
only, and the choice of the best.

The search never sees the test split: :func:`cross_validate` takes the training rows and nothing
else, and the pipeline's scoring step receives only the training table. The chosen candidate is
then trained on the whole training split and evaluated on the test split like any other model.

Expanding a grid and picking the best score need only the standard library (the pipeline's
plan_grid and select_candidate steps install nothing); scoring imports scikit-learn.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeserve.catalog import CLASSIFICATION, REGRESSION
from pipeserve.errors import ConfigError
from pipeserve.gate import LOWER_IS_BETTER, PRIMARY_METRIC

if TYPE_CHECKING:
    import numpy as np

MAX_GRID_CANDIDATES = 100
DEFAULT_CV_FOLDS = 5
# What cross-validation ranks candidates by: the gate's primary metric, so the search optimises
# what the gate later judges. task -> (metric, scikit-learn scorer, sign to turn the scorer's value
# into the metric; scikit-learn negates losses).
CV_METRIC: dict[str, tuple[str, str, float]] = {
    CLASSIFICATION: (PRIMARY_METRIC[CLASSIFICATION], "f1_macro", 1.0),
    REGRESSION: (PRIMARY_METRIC[REGRESSION], "neg_root_mean_squared_error", -1.0),
}


def parse_grid(pairs: Iterable[str]) -> dict[str, list[Any]]:
    """Parse ``NAME=V1,V2,...`` strings (``--grid C=0.01,0.1,1``) into ``{name: [values]}``.

    Each value is a Python literal when it parses (``0.1``, ``200``, ``None``), else a string.

    Raises:
        ConfigError: Not NAME=VALUES, an empty value, or the same name twice.
    """
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key or not all(values):
            raise ConfigError(f"A grid is given as NAME=V1,V2,..., e.g. C=0.01,0.1,1; got {pair!r}.")
        if key in grid:
            raise ConfigError(f"Grid parameter {key!r} is given twice; list all its values once: {key}=V1,V2,...")
        grid[key] = [_literal(v) for v in values]
    return grid


def _literal(raw: str) -> Any:
    """``0.1`` -> 0.1, ``None`` -> None, ``balanced`` -> 'balanced' (as training.parse_params reads -p)."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def grid_from_json(text: str) -> dict[str, list[Any]]:
    """Read a grid given as JSON (the pipeline's ``param_grid_json``): ``{"C": [0.01, 0.1], ...}``.

    Raises:
        ConfigError: Not a JSON object of non-empty lists.
    """
    try:
        grid = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"param_grid_json must be a JSON object such as {{\"C\": [0.01, 0.1, 1]}}; got "
                          f"{text!r}: {exc}") from exc
    if not isinstance(grid, dict) or not grid or not all(
            isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"param_grid_json must map each hyperparameter to a non-empty list of values, e.g. "
                          f'{{"C": [0.01, 0.1, 1]}}; got {text!r}.')
    return {str(k): list(v) for k, v in grid.items()}


def expand_grid(grid: Mapping[str, Sequence[Any]], base: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, each merged over the fixed ``base`` params.

    The order is the grid's: the last parameter varies fastest (``itertools.product``), so the
    candidates are numbered the same way everywhere (CLI, pipeline, UI).

    Raises:
        ConfigError: A parameter is both fixed and searched, a parameter has no values, or there
            are more than MAX_GRID_CANDIDATES combinations.
    """
    base = dict(base or {})
    both = sorted(set(grid) & set(base))
    if both:
        raise ConfigError(f"{', '.join(both)} is both fixed (-p / params_json) and searched (--grid / "
                          "param_grid_json); give it in one place.")
    if not grid or not all(len(values) for values in grid.values()):
        raise ConfigError("A grid needs at least one parameter with at least one value, e.g. C=0.01,0.1,1.")
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_GRID_CANDIDATES:
        raise ConfigError(f"The grid has {count} combinations; at most {MAX_GRID_CANDIDATES} are searched. "
                          "Use fewer values.")
    keys = list(grid)
    return [{**base, **dict(zip(keys, values, strict=True))} for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class CVScore:
    """One candidate's cross-validated score on the training split.

    Args:
        index: The candidate's position in the grid (from 0).
        params: Its hyperparameters (the fixed ones included).
        metric: What was measured (``f1_macro``, ``rmse``).
        mean: Mean over the folds.
        std: Standard deviation over the folds.
        folds: The score of each fold.
    """

    index: int
    params: dict[str, Any]
    metric: str
    mean: float
    std: float
    folds: tuple[float, ...]

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CVScore:
        raw = json.loads(text)
        # KFP passes numbers through protobuf Structs: ints may come back as floats.
        return cls(int(raw["index"]), dict(raw["params"]), str(raw["metric"]), float(raw["mean"]),
                   float(raw["std"]), tuple(float(f) for f in raw["folds"]))


def cross_validate(task: str, name: str, params: Mapping[str, Any] | None, X: np.ndarray, y: np.ndarray, *,
                   folds: int = DEFAULT_CV_FOLDS, random_state: int = 0, index: int = 0) -> CVScore:
    """Score a candidate by k-fold cross-validation on ``X, y``: pass the training split only.

    The folds are stratified for classification and shuffled with ``random_state``, so every
    candidate sees the same folds. The test split is never an argument: the search cannot leak it.

    Raises:
        ConfigError: Invalid hyperparameters, fewer than 2 folds possible, or a fit that fails.
    """
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    from pipeserve.training import make_estimator

    estimator = make_estimator(task, name, params)
    metric, scorer, sign = CV_METRIC[task]
    n_splits = int(folds)
    if task == CLASSIFICATION:
        _, counts = np.unique(y, return_counts=True)
        n_splits = min(n_splits, int(counts.min()))
        splitter: Any = StratifiedKFold(n_splits=max(n_splits, 2), shuffle=True, random_state=random_state)
    else:
        n_splits = min(n_splits, len(y))
        splitter = KFold(n_splits=max(n_splits, 2), shuffle=True, random_state=random_state)
    if n_splits < 2:
        raise ConfigError(f"Cross-validation needs at least 2 folds; the training split allows {n_splits} "
                          "(a class with a single row?). Use more data or no grid.")
    try:
        values = sign * cross_val_score(estimator, X, y, cv=splitter, scoring=scorer, error_score="raise")
    except ValueError as exc:
        raise ConfigError(f"{name} could not be cross-validated with {dict(params or {})}: {exc}") from exc
    return CVScore(index, dict(params or {}), metric, float(values.mean()), float(values.std()),
                   tuple(float(v) for v in values))


def select_best(scores: Iterable[CVScore]) -> CVScore:
    """The best candidate by mean CV score (higher F1, lower RMSE); ties go to the earlier candidate.

    Raises:
        ConfigError: No scores, or scores of different metrics.
    """
    ranked = sorted(scores, key=lambda s: s.index)
    if not ranked:
        raise ConfigError("No candidate was scored; the grid is empty.")
    if len({s.metric for s in ranked}) != 1:
        raise ConfigError(f"Candidates were scored by different metrics: {sorted({s.metric for s in ranked})}.")
    if ranked[0].lower_is_better:
        return min(ranked, key=lambda s: s.mean)
    return max(ranked, key=lambda s: s.mean)


def candidate_label(params: Mapping[str, Any], grid: Iterable[str] | None = None) -> str:
    """``C=0.1 max_iter=200``: the searched parameters of a candidate (all of them without ``grid``)."""
    keys = list(grid) if grid is not None else sorted(params)
    return " ".join(f"{k}={params[k]!r}" if isinstance(params[k], str) else f"{k}={params[k]}"
                    for k in keys if k in params)


def grid_markdown(scores: Iterable[CVScore], best: CVScore, estimator: str, grid: Iterable[str] | None = None) -> str:
    """Every candidate's cross-validated score as a Markdown table, the chosen one marked (for the KFP UI)."""
    ranked = sorted(scores, key=lambda s: s.index)
    arrow = "↓" if best.lower_is_better else "↑"
    lines = [f"# Hyperparameter search: {estimator}, {len(ranked)} candidates", "",
             f"Chosen: **{candidate_label(best.params, grid)}** — mean {best.metric} {best.mean:.4f} "
             f"(± {best.std:.4f}) over {len(best.folds)} folds of the training split. The test split is kept "
             "for the evaluation of the chosen model only.", "",
             f"| # | candidate | {best.metric} {arrow} (mean) | std | folds |", "| ---: | --- | ---: | ---: | --- |"]
    for s in ranked:
        mark = " **(chosen)**" if s.index == best.index else ""
        lines.append(f"| {s.index} | `{candidate_label(s.params, grid)}`{mark} | {s.mean:.4f} | {s.std:.4f} | "
                     f"{' '.join(f'{f:.3f}' for f in s.folds)} |")
    return "\n".join(lines) + "\n"
