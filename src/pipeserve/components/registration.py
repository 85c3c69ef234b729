"""The register component: the packaged model becomes a registered version (the registry numbers it)."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Model, Output


def register(
    packaged_model: Input[Model],
    registry: str,
    model_name: str,
    registered_model: Output[Model],
    storage_uri: str = "",
    registry_artifacts: str = "",
    pipeline_run: str = "",
    library: Input[Artifact] = None,
) -> NamedTuple("Registered", [("version", str), ("storage_uri", str), ("champion_json", str)]):
    """Register the packaged model as a new version with the alias challenger, and read the champion.

    The registry assigns the version number; the registered copy (its Triton version folder,
    config.pbtxt and model card re-stamped with that number) is downloaded back, verified, as
    registered_model.

    Args:
        packaged_model: Model repository from package.
        registry: MLflow registry URI; in a pod, an MLflow tracking server (http(s)://host:port).
        model_name: Model name (the registered model).
        registered_model: The registered version's model repository, as stored in the registry.
        storage_uri: storageUri to use when KServe cannot fetch the registry's artifacts (a local
            store); empty for the artifact's own URI.
        registry_artifacts: The MLflow server's --artifacts-destination (s3://...), to turn
            mlflow-artifacts: locations into the bucket path KServe fetches.
        pipeline_run: Pipeline run id, recorded with the alias move.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The version number; the storageUri for the manifest (the registry's when KServe can fetch
        it, else storage_uri); the champion version (metrics included) as JSON, empty when there is
        none yet.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json
    from collections import namedtuple
    from pathlib import Path

    from pipeserve.errors import NotFound
    from pipeserve.registry import CHALLENGER, CHAMPION, ModelRef, open_registry
    from pipeserve.registry.locations import UnfetchableStorage

    reg = open_registry(registry, artifacts_destination=registry_artifacts or None)
    reason = f"pipeline run {pipeline_run}" if pipeline_run else "pipeline run"
    mv = reg.register(Path(packaged_model.path) / model_name, alias=CHALLENGER, reason=reason)
    reg.download(mv.ref, Path(registered_model.path))
    try:
        uri = reg.storage_uri(mv.ref)
    except UnfetchableStorage:
        uri = storage_uri
    try:
        champion = json.dumps(reg.get(ModelRef(model_name, alias=CHAMPION)).to_dict(), sort_keys=True)
    except NotFound:
        champion = ""
    registered_model.metadata.update({"model_name": mv.name, "model_version": mv.version, "mlflow_run_id": mv.run_id,
                                      "registry": reg.settings.display_uri, "source": mv.source, **mv.metrics})
    Registered = namedtuple("Registered", ["version", "storage_uri", "champion_json"])
    return Registered(mv.version, uri, champion)
