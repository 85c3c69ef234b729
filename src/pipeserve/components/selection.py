"""The select_candidate component: the best cross-validated candidate, and every candidate's score."""

from kfp.dsl import Artifact, Input, Markdown, Metrics, Output


def select_candidate(
    scores: list,
    search: Output[Markdown],
    candidate_scores: Output[Metrics],
    param_grid_json: str = "",
    library: Input[Artifact] = None,
) -> str:
    """Pick the candidate with the best mean cross-validated score (ties: the earlier one).

    Args:
        scores: Every candidate's score from score_candidate (dsl.Collected).
        search: Every candidate with its score, the chosen one marked (KFP UI: Markdown).
        candidate_scores: Each candidate's mean score by its hyperparameters (KFP UI: metrics table).
        param_grid_json: The grid, to name candidates by the searched hyperparameters.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The chosen hyperparameters as a JSON object (train fits them on the whole training split).
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json

    from pipeserve import tuning

    raw = [json.loads(s) for s in scores]
    parsed = [tuning.CVScore.from_json(s) for s in scores]
    best = tuning.select_best(parsed)
    grid = list(tuning.grid_from_json(param_grid_json)) if param_grid_json else None
    estimator = str(raw[0].get("estimator", "")) if raw else ""
    with open(search.path, "w") as fh:
        fh.write(tuning.grid_markdown(parsed, best, estimator, grid))
    for score in parsed:
        candidate_scores.log_metric(f"#{score.index} {tuning.candidate_label(score.params, grid)}", score.mean)
    candidate_scores.metadata.update({"metric": best.metric, "chosen": best.index})
    return json.dumps(best.params, sort_keys=True)
