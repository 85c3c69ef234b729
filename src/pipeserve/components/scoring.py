"""The score_candidate component: one candidate's cross-validated score, on the training split only."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def score_candidate(
    train_data: Input[Dataset],
    candidate: str,
    cv_metrics: Output[Metrics],
    estimator: str = "",
    cv_folds: int = 5,
    random_state: int = 42,
    library: Input[Artifact] = None,
) -> str:
    """Score one candidate of the grid by k-fold cross-validation on the training split.

    The step never receives the test split: the search cannot see the rows the chosen model is
    later evaluated on.

    Args:
        train_data: Training table from load_data (the only data this step reads).
        candidate: One candidate from plan_grid, {"index": i, "params": {...}}.
        cv_metrics: The candidate's mean and spread over the folds (KFP UI: metrics table).
        estimator: Catalogue name; empty for the task's default.
        cv_folds: Number of folds (fewer when a class has fewer rows).
        random_state: Seed of the fold shuffling (the same folds for every candidate).
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The score as a JSON object (index, params, metric, mean, std, folds, estimator).
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json

    from pipeserve import data, training, tuning

    item = json.loads(candidate)
    task, target = train_data.metadata["task"], train_data.metadata["target"]
    X, y, _ = data.read_split_frame(train_data.path, target)
    name = estimator or training.DEFAULT_ESTIMATOR[task]
    score = tuning.cross_validate(task, name, item["params"], X, y, folds=cv_folds, random_state=random_state,
                                    index=int(item["index"]))
    cv_metrics.log_metric(f"cv_{score.metric}_mean", score.mean)
    cv_metrics.log_metric(f"cv_{score.metric}_std", score.std)
    cv_metrics.metadata["candidate"] = tuning.candidate_label(score.params)
    return json.dumps({**json.loads(score.to_json()), "estimator": name}, sort_keys=True)
