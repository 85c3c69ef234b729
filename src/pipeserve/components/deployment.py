"""The deploy component: put the model on KServe, wait until it serves, roll back when it does not."""

from kfp.dsl import Artifact, Input, Markdown, Model, Output


def deploy(
    packaged_model: Input[Model],
    model_name: str,
    report: Output[Markdown],
    registry: str = "",
    version: str = "",
    champion_json: str = "",
    registry_artifacts: str = "",
    storage_uri: str = "",
    target: str = "triton-gpu",
    namespace: str = "",
    min_replicas: int = 1,
    max_replicas: int = 3,
    runtime_version: str = "",
    smoke: bool = True,
    timeout_seconds: int = 600,
    pipeline_run: str = "",
    library: Input[Artifact] = None,
) -> str:
    """Apply the model's InferenceService, wait until it is rolled out and Ready, and smoke-test it.

    With a registry, the version that passed the gate is rolled out and only then becomes the
    champion (compare-and-set against the champion the gate read); a rollout that never becomes
    Ready is rolled back to the previous champion, with the reason. Without a registry the
    packaged model is deployed as `pipeserve deploy` would. In a pod this runs as the pipeline's
    ServiceAccount (grant it manifests/rbac's Role); locally it uses the current kubeconfig.

    Args:
        packaged_model: The model repository (from package, or the registered version).
        model_name: Model name.
        report: What was deployed where, as Markdown for the KFP UI.
        registry: MLflow registry URI; empty: deploy the packaged model, no alias moves.
        version: The registered version to serve (with a registry).
        champion_json: The champion the gate compared against (register's output); its version is
            what the alias must still point at when it moves.
        registry_artifacts: The MLflow server's --artifacts-destination.
        storage_uri: Where KServe fetches the model; empty: the registry's location, else the
            packaged model's artifact URI.
        target: triton-gpu, triton-cpu, pipeserve or sklearnserver.
        namespace: Namespace of the InferenceService; empty for the current one.
        min_replicas: Minimum replicas.
        max_replicas: Maximum replicas.
        runtime_version: Image tag of the serving runtime; empty for the cluster's default.
        smoke: Send one v2 inference once Ready (turn off where pods do not really serve).
        timeout_seconds: How long to wait for the rollout (and again for a rollback).
        pipeline_run: Pipeline run id, recorded with the rollout.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        One line: what serves where now.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json
    from pathlib import Path

    from pipeserve.deployment import deploy_model, deploy_version
    from pipeserve.kube.render import offline_checks

    options = dict(target=target, min_replicas=min_replicas, max_replicas=max_replicas,
                   runtime_version=runtime_version or None)
    # The API server checks the manifest strictly (server-side apply, fieldValidation=Strict): the
    # library leaves the vendored CRD schemas out of the compiled pipeline.
    with offline_checks(False):
        if registry:
            champion = json.loads(champion_json)["version"] if champion_json else None
            outcome = deploy_version(registry, model_name, version, namespace=namespace, expected=champion,
                                     options=options, storage_uri=storage_uri or None, smoke=smoke,
                                     timeout_s=timeout_seconds, registry_artifacts=registry_artifacts or None,
                                     reason=f"pipeline run {pipeline_run}" if pipeline_run else "pipeline run")
        else:
            outcome = deploy_model(Path(packaged_model.path), model_name, packaged_model.uri, namespace=namespace,
                                   options=options, storage_uri=storage_uri or None, smoke=smoke,
                                   timeout_s=timeout_seconds)
    with open(report.path, "w") as fh:
        fh.write(outcome.markdown)
    report.metadata.update(outcome.metadata)
    return outcome.summary
