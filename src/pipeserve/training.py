"""A small catalogue of scikit-learn estimators (hyperparameters checked against each one), and loading them back."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeserve.catalog import CLASSIFICATION, REGRESSION
from pipeserve.errors import ConfigError, IntegrityError

# task -> name -> (dotted class, default params). Defaults make runs deterministic and converge.
CATALOGUE: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    CLASSIFICATION: {
        "logistic_regression": ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
        "random_forest": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100, "random_state": 0}),
        "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingClassifier", {"random_state": 0}),
    },
    REGRESSION: {
        "ridge": ("sklearn.linear_model.Ridge", {}),
        "random_forest": ("sklearn.ensemble.RandomForestRegressor", {"n_estimators": 100, "random_state": 0}),
        "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingRegressor", {"random_state": 0}),
    },
}
# Types skops does not trust by default but our catalogue's estimators need. Anything else in a
# skops file is refused: loading is then as safe as skops' own default set.
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})
DEFAULT_ESTIMATOR = {CLASSIFICATION: "logistic_regression", REGRESSION: "ridge"}
# Estimators whose predictions are defined for NaN inputs (the server lets NaN through for these).
ACCEPTS_NAN = {"hist_gradient_boosting"}


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``k=v`` strings; values are Python literals when they parse (``3``, ``0.1``, ``None``), else strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Hyperparameters are given as NAME=VALUE, e.g. C=0.5; got {pair!r}.")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        params[key.strip()] = value
    return params


def estimator_names(task: str) -> list[str]:
    return list(CATALOGUE[task])


def make_estimator(task: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
    """Build an unfitted estimator from the catalogue, with params validated by scikit-learn itself.

    Raises:
        ConfigError: Unknown estimator, unknown parameter name, or an invalid value.
    """
    if name not in CATALOGUE.get(task, {}):
        raise ConfigError(
            f"Unknown estimator {name!r} for {task}; choose one of: {', '.join(CATALOGUE[task])}."
        )
    dotted, defaults = CATALOGUE[task][name]
    module, _, cls_name = dotted.rpartition(".")
    estimator = getattr(importlib.import_module(module), cls_name)()
    valid = estimator.get_params()
    unknown = sorted(set(params or {}) - set(valid))
    if unknown:
        raise ConfigError(
            f"Unknown hyperparameter(s) {', '.join(unknown)} for {name} ({cls_name}); valid ones are: "
            f"{', '.join(sorted(valid))}."
        )
    estimator.set_params(**{**defaults, **(params or {})})
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        # scikit-learn checks values at fit time; check now, so a typo fails before any work.
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise ConfigError(f"Invalid hyperparameter for {name}: {exc}") from exc
    return estimator


def train(task: str, name: str, params: Mapping[str, Any] | None, X: np.ndarray, y: np.ndarray) -> Any:
    """Fit a catalogue estimator on X, y and return it."""
    estimator = make_estimator(task, name, params)
    try:
        estimator.fit(X, y)
    except ValueError as exc:
        raise ConfigError(f"{name} could not be fitted with these hyperparameters: {exc}") from exc
    snap_thresholds_to_float32(estimator)
    return estimator


def _round_down_to_float32(t: np.ndarray) -> np.ndarray:
    t32 = t.astype(np.float32)
    over = t32.astype(np.float64) > t
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32.astype(np.float64)


def snap_thresholds_to_float32(estimator: Any) -> None:
    """Round tree split thresholds down to the nearest float32, in place.

    Trees compare ``x <= threshold`` in float64, ONNX (and Triton) in float32. A float64 threshold
    between two float32 values can round up past an input, and the ONNX model then takes the other
    branch (seen on diabetes with hist_gradient_boosting: one prediction off by 2.5). With the
    threshold rounded down, ``x <= t`` and ``x <= t32`` agree for every float32 x, which is all the
    served models ever receive, so scikit-learn predictions on float32 inputs are unchanged.
    """
    for tree in getattr(estimator, "estimators_", []):  # forests
        if hasattr(tree, "tree_"):
            threshold = tree.tree_.threshold
            threshold[:] = _round_down_to_float32(threshold)
    for predictors in getattr(estimator, "_predictors", []):  # histogram gradient boosting
        for predictor in predictors:
            predictor.nodes["num_threshold"] = _round_down_to_float32(predictor.nodes["num_threshold"])


def describe(name: str, estimator: Any) -> dict[str, Any]:
    """The model card's ``estimator`` entry: catalogue name, class, JSON-safe params, NaN support."""
    cls = type(estimator)
    params = {k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)
              for k, v in sorted(estimator.get_params().items())}
    return {
        "name": name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "params": params,
        "accepts_nan": name in ACCEPTS_NAN,
    }


def load_estimator(path: str | Path) -> Any:
    """Load a skops file, trusting skops' defaults plus TRUSTED_SKOPS_TYPES only (never pickle).

    Raises:
        IntegrityError: The file holds a type outside the allow-list.
    """
    import skops.io

    untrusted = set(skops.io.get_untrusted_types(file=path))
    refused = sorted(untrusted - TRUSTED_SKOPS_TYPES)
    if refused:
        raise IntegrityError(
            f"{path} contains types pipeserve does not trust: {', '.join(refused)}. Only the estimators "
            "of the pipeserve catalogue are loaded; re-package the model with `pipeserve run`."
        )
    return skops.io.load(path, trusted=sorted(untrusted))
