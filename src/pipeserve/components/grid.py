"""The plan_grid component: expand a hyperparameter grid into the candidates the fan-out scores."""

from kfp.dsl import Artifact, Input


def plan_grid(param_grid_json: str, params_json: str = "{}", library: Input[Artifact] = None) -> list:
    """Expand a hyperparameter grid into its candidates, fixed hyperparameters merged into each.

    Args:
        param_grid_json: The grid, a JSON object of value lists, e.g. {"C": [0.01, 0.1, 1]}.
        params_json: Fixed hyperparameters (JSON object), the same for every candidate.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        One JSON object per candidate, {"index": i, "params": {...}}, in grid order.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json

    from pipeserve import tuning
    from pipeserve.errors import ConfigError

    try:
        base = json.loads(params_json or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"params_json must be a JSON object, got {params_json!r}: {exc}") from exc
    candidates = tuning.expand_grid(tuning.grid_from_json(param_grid_json), base)
    return [json.dumps({"index": i, "params": params}, sort_keys=True) for i, params in enumerate(candidates)]
