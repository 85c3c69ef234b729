"""pipeserve.training: the catalogue, hyperparameter checks, and the float32 threshold snap."""

from __future__ import annotations

import numpy as np
import pytest

from pipeserve import data, training
from pipeserve.errors import ConfigError


@pytest.mark.parametrize(
    ("task", "name"), [(task, name) for task, names in training.CATALOGUE.items() for name in names]
)
def test_every_catalogue_estimator_trains(task, name):
    split = data.split_dataset(data.load_dataset("iris" if task == "classification" else "diabetes"))
    model = training.train(task, name, {}, split.X_train, split.y_train)
    assert model.predict(split.X_test).shape == (len(split.X_test),)
    info = training.describe(name, model)
    assert info["name"] == name and info["class"].startswith("sklearn.")
    assert info["accepts_nan"] is (name == "hist_gradient_boosting")


def test_params_are_parsed_and_applied():
    params = training.parse_params(["C=0.5", "max_iter=50", "class_weight=balanced", "fit_intercept=False"])
    assert params == {"C": 0.5, "max_iter": 50, "class_weight": "balanced", "fit_intercept": False}
    model = training.make_estimator("classification", "logistic_regression", params)
    assert model.get_params()["C"] == 0.5 and model.get_params()["max_iter"] == 50


def test_defaults_apply_and_user_params_win():
    assert training.make_estimator("classification", "random_forest").get_params()["random_state"] == 0
    est = training.make_estimator("classification", "random_forest", {"random_state": 3})
    assert est.get_params()["random_state"] == 3


@pytest.mark.parametrize(
    ("task", "name", "params", "message"),
    [
        ("classification", "svm", {}, "Unknown estimator 'svm'.*logistic_regression, random_forest"),
        ("regression", "logistic_regression", {}, "Unknown estimator.*ridge"),
        ("classification", "logistic_regression", {"Cee": 1}, "Unknown hyperparameter.*Cee.*valid ones are: C,"),
        ("classification", "logistic_regression", {"C": -1}, "'C' parameter of LogisticRegression must be"),
        ("classification", "random_forest", {"n_estimators": "many"}, "n_estimators"),
    ],
)
def test_bad_choices_name_the_valid_ones(task, name, params, message):
    with pytest.raises(ConfigError, match=message):
        training.make_estimator(task, name, params)


@pytest.mark.parametrize("pair", ["C", "=1", ""])
def test_malformed_param_pairs(pair):
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        training.parse_params([pair])


def test_threshold_snap_keeps_float32_predictions():
    split = data.split_dataset(data.load_dataset("diabetes"))
    model = training.make_estimator("regression", "hist_gradient_boosting").fit(split.X_train, split.y_train)
    before = model.predict(split.X_test)
    training.snap_thresholds_to_float32(model)
    np.testing.assert_array_equal(before, model.predict(split.X_test))
    for predictor in model._predictors[0]:
        thresholds = predictor.nodes["num_threshold"]
        np.testing.assert_array_equal(thresholds, thresholds.astype(np.float32).astype(np.float64))
