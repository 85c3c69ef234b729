"""The promote component: the challenger that passed the gate becomes the champion (compare-and-set)."""

from kfp.dsl import Artifact, Input, Markdown


def promote(
    registry: str,
    model_name: str,
    version: str,
    decision: Input[Markdown],
    registry_artifacts: str = "",
    pipeline_run: str = "",
    library: Input[Artifact] = None,
) -> str:
    """Move the champion alias to the version, if it still points where the gate read it.

    Args:
        registry: MLflow registry URI.
        model_name: Model name.
        version: The version to promote (it passed the gate).
        decision: The gate's decision; its metadata names the champion it compared with.
        registry_artifacts: The MLflow server's --artifacts-destination.
        pipeline_run: Pipeline run id, recorded with the alias move.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The move, e.g. 'iris@champion: 2 -> 3'.

    Raises:
        ConflictError: The champion moved since the gate read it (another pipeline or a person
            promoted meanwhile); nothing is overwritten.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    from pipeserve.registry import open_registry

    expected = decision.metadata.get("champion_version") or None
    reg = open_registry(registry, artifacts_destination=registry_artifacts or None)
    why = f"passed the gate ({decision.metadata.get('rule', '')})"
    change = reg.promote(model_name, version, expected=expected,
                         reason=f"{why}, pipeline run {pipeline_run}" if pipeline_run else why)
    if change is None:
        return f"{model_name}@champion: already {version}"
    return f"{model_name}@champion: {change.from_version or 'unset'} -> {change.to_version}"
