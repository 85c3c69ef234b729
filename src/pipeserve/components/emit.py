"""The emit_inference_service component: the KServe InferenceService manifest for the packaged model."""

from kfp.dsl import Artifact, Input, Model, Output


def emit_inference_service(
    packaged_model: Input[Model],
    model_name: str,
    manifest: Output[Artifact],
    target: str = "triton-gpu",
    namespace: str = "",
    min_replicas: int = 1,
    max_replicas: int = 3,
    storage_uri: str = "",
    runtime_version: str = "",
    library: Input[Artifact] = None,
) -> str:
    """Render a KServe InferenceService (YAML) that serves the packaged model.

    Args:
        packaged_model: Model repository from package.
        model_name: Model name (the repository folder; Triton's v2 model name).
        manifest: The InferenceService YAML, ready for ``kubectl apply -f``.
        target: triton-gpu (ONNX on Triton, GPU), triton-cpu, or pipeserve (our v2 runtime).
        namespace: Namespace for the InferenceService; empty for kubectl's current one.
        min_replicas: Minimum replicas.
        max_replicas: Maximum replicas.
        storage_uri: Where KServe downloads the model; empty to use the artifact's own URI
            (KFP's ``minio://`` is rewritten to ``s3://``).
        runtime_version: Image tag of the serving runtime (e.g. Triton ``24.08-py3``); empty for
            the cluster's default. The model must load in it (checked).
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The storageUri written into the manifest.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    from pathlib import Path

    from pipeserve.kube import DeploymentSpec, build_inference_service, to_yaml
    from pipeserve.modelcard import read_card
    from pipeserve.storage import storage_uri_for

    card = read_card(Path(packaged_model.path) / model_name)
    uri = storage_uri or storage_uri_for(packaged_model.uri)
    spec = DeploymentSpec.from_options(target=target, namespace=namespace,
                                       min_replicas=min_replicas, max_replicas=max_replicas,
                                       runtime_version=runtime_version)
    with open(manifest.path, "w") as fh:
        fh.write(to_yaml(build_inference_service(card, uri, spec)))
    manifest.metadata.update({"kind": "InferenceService", "storageUri": uri, "target": target})
    return uri
