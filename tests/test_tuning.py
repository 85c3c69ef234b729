"""pipeserve.tuning: grids, cross-validation on the training split only, the choice of the best."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeserve import data, gate, training, tuning
from pipeserve.errors import ConfigError


@pytest.fixture(scope="module")
def iris_split() -> data.Split:
    return data.split_dataset(data.load_dataset("iris"), random_state=42)


def test_grids_parse_like_params() -> None:
    grid = tuning.parse_grid(["C=0.01,0.1,1", "max_iter=100, 200", "class_weight=balanced,None"])
    assert grid == {"C": [0.01, 0.1, 1], "max_iter": [100, 200], "class_weight": ["balanced", None]}
    assert training.parse_params(["C=0.1"])["C"] == grid["C"][1]  # the same literals as -p


@pytest.mark.parametrize(("pairs", "match"), [
    (["C"], "NAME=V1,V2"),
    (["C="], "NAME=V1,V2"),
    (["C=0.1,,1"], "NAME=V1,V2"),
    (["=1,2"], "NAME=V1,V2"),
    (["C=1", "C=2"], "given twice"),
])
def test_bad_grids_are_one_line_config_errors(pairs: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tuning.parse_grid(pairs)


def test_expansion_is_the_product_in_grid_order_with_fixed_params_merged() -> None:
    candidates = tuning.expand_grid({"C": [0.1, 1], "max_iter": [100, 200]}, {"tol": 1e-3})
    assert candidates == [{"tol": 1e-3, "C": 0.1, "max_iter": 100}, {"tol": 1e-3, "C": 0.1, "max_iter": 200},
                          {"tol": 1e-3, "C": 1, "max_iter": 100}, {"tol": 1e-3, "C": 1, "max_iter": 200}]


@pytest.mark.parametrize(("grid", "base", "match"), [
    ({"C": [0.1]}, {"C": 1}, "both fixed"),
    ({}, {}, "at least one parameter"),
    ({"C": []}, {}, "at least one parameter"),
    ({"a": list(range(11)), "b": list(range(10))}, {}, "110 combinations"),
])
def test_expansion_refuses_what_it_cannot_search(grid: dict, base: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tuning.expand_grid(grid, base)


@pytest.mark.parametrize("text", ["", "[1]", '{"C": 1}', '{"C": []}', "{}", "{nope"])
def test_the_pipeline_grid_parameter_is_checked(text: str) -> None:
    with pytest.raises(ConfigError, match="param_grid_json"):
        tuning.grid_from_json(text)


def test_cross_validation_scores_the_primary_metric_reproducibly(iris_split: data.Split) -> None:
    X, y = iris_split.X_train, iris_split.y_train
    score = tuning.cross_validate("classification", "logistic_regression", {"C": 1.0}, X, y, random_state=7, index=3)
    again = tuning.cross_validate("classification", "logistic_regression", {"C": 1.0}, X, y, random_state=7, index=3)
    assert score == again and score.index == 3 and score.metric == gate.PRIMARY_METRIC["classification"]
    assert len(score.folds) == tuning.DEFAULT_CV_FOLDS and 0.9 < score.mean <= 1.0
    assert score.mean == pytest.approx(np.mean(score.folds)) and score.std == pytest.approx(np.std(score.folds))
    assert tuning.CVScore.from_json(score.to_json()) == score


def test_the_search_ranks_by_what_the_gate_judges() -> None:
    for task, metric in gate.PRIMARY_METRIC.items():
        assert tuning.CV_METRIC[task][0] == metric
        assert (metric in tuning.LOWER_IS_BETTER) == (metric in gate.LOWER_IS_BETTER)


def test_regression_scores_rmse_and_the_lowest_wins() -> None:
    split = data.split_dataset(data.load_dataset("diabetes"))
    scores = [tuning.cross_validate("regression", "ridge", {"alpha": a}, split.X_train, split.y_train, index=i)
              for i, a in enumerate([100.0, 0.1])]
    assert all(s.metric == "rmse" and s.mean > 0 for s in scores)  # a loss, not scikit-learn's negated one
    assert tuning.select_best(scores) == min(scores, key=lambda s: s.mean)


def test_the_best_mean_wins_and_ties_go_to_the_earlier_candidate() -> None:
    def score(index: int, mean: float) -> tuning.CVScore:
        return tuning.CVScore(index, {"C": index}, "f1_macro", mean, 0.0, (mean,))

    assert tuning.select_best([score(2, 0.9), score(0, 0.8), score(1, 0.9)]).index == 1
    with pytest.raises(ConfigError, match="No candidate"):
        tuning.select_best([])


def test_scores_survive_kfp_turning_ints_into_floats() -> None:
    raw = json.loads(tuning.CVScore(2, {"max_iter": 100}, "f1_macro", 0.9, 0.01, (0.9, 0.9)).to_json())
    raw["index"] = 2.0
    assert tuning.CVScore.from_json(json.dumps(raw)).index == 2


def test_a_class_too_small_for_two_folds_is_refused() -> None:
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.array([0] * 9 + [1])
    with pytest.raises(ConfigError, match="at least 2 folds"):
        tuning.cross_validate("classification", "logistic_regression", {}, X, y)


def test_invalid_candidates_fail_before_fitting(iris_split: data.Split) -> None:
    with pytest.raises(ConfigError, match="'C' parameter"):
        tuning.cross_validate("classification", "logistic_regression", {"C": -1}, iris_split.X_train,
                              iris_split.y_train)


def test_the_markdown_shows_every_candidate_and_the_choice() -> None:
    scores = [tuning.CVScore(i, {"C": c, "max_iter": 100}, "f1_macro", m, 0.01, (m, m))
              for i, (c, m) in enumerate([(0.01, 0.8), (1, 0.95)])]
    text = tuning.grid_markdown(scores, scores[1], "logistic_regression", ["C"])
    assert "| 0 | `C=0.01` | 0.8000 |" in text and "| 1 | `C=1` **(chosen)** | 0.9500 |" in text
    assert "training split" in text and "max_iter" not in text  # named by the searched parameters
