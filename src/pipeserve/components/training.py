"""The train component: fit a catalogue estimator."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def train(
    train_data: Input[Dataset],
    model: Output[Model],
    estimator: str = "",
    params_json: str = "{}",
    library: Input[Artifact] = None,
):
    """Fit a scikit-learn estimator from the pipeserve catalogue and save it in skops format.

    Args:
        train_data: Training table from load_data.
        model: The fitted estimator (a skops file; never pickle).
        estimator: Catalogue name (logistic_regression, random_forest, hist_gradient_boosting;
            ridge for regression); empty for the task's default.
        params_json: Hyperparameters as a JSON object, checked against the estimator.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json

    import skops.io

    from pipeserve import data, training
    from pipeserve.errors import ConfigError

    try:
        params = json.loads(params_json or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"params_json must be a JSON object, got {params_json!r}: {exc}") from exc
    task, target = train_data.metadata["task"], train_data.metadata["target"]
    X, y, _ = data.read_split_frame(train_data.path, target)
    name = estimator or training.DEFAULT_ESTIMATOR[task]
    fitted = training.train(task, name, params, X, y)
    skops.io.dump(fitted, model.path)
    model.metadata.update({"framework": "sklearn", "format": "skops", **training.describe(name, fitted)})
