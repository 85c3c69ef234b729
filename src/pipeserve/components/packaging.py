"""The package component: ONNX (Triton layout) + skops + model card, after a parity check."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def package(
    model: Input[Model],
    train_data: Input[Dataset],
    test_data: Input[Dataset],
    metrics_json: str,
    model_name: str,
    packaged_model: Output[Model],
    model_version: str = "1",
    triton_max_batch_size: int = 0,
    pipeline_run: str = "",
    source_revision: str = "",
    serving_target: str = "triton-gpu",
    runtime_version: str = "",
    library: Input[Artifact] = None,
):
    """Convert to ONNX, check parity with scikit-learn, and write a Triton model repository.

    The output folder is the repository: ``<model_name>/config.pbtxt``, ``<model_name>/model-card.json``,
    ``<model_name>/<version>/model.onnx`` and ``model.skops``. Point a KServe ``storageUri`` at it.

    Args:
        model: Fitted estimator from train.
        train_data: Training table (carries the data lineage).
        test_data: Held-out table; ONNX and scikit-learn must agree on it.
        metrics_json: Metrics from evaluate, recorded in the model card.
        model_name: Model name (the Triton folder and the v2 model name).
        packaged_model: The model repository folder.
        model_version: Model version (positive integer, the Triton version folder).
        triton_max_batch_size: Triton max_batch_size; 0 disables Triton's batching.
        pipeline_run: Pipeline run id, recorded as lineage.
        source_revision: Source revision (e.g. git SHA), recorded as lineage.
        serving_target: Where the model will be served; the ONNX file is converted for the ONNX
            Runtime of that target's runtime image.
        runtime_version: Image tag of that runtime; empty for what stock KServe 0.21 runs.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json

    from pipeserve import data, packaging, runtimes, training
    from pipeserve.modelcard import LINEAGE_REVISION, LINEAGE_RUN_ID

    task, target = test_data.metadata["task"], test_data.metadata["target"]
    fitted = training.load_estimator(model.path)
    X_test, _, features = data.read_split_frame(test_data.path, target)

    lineage = {k: v for k, v in {LINEAGE_RUN_ID: pipeline_run, LINEAGE_REVISION: source_revision}.items() if v}
    request = packaging.PackageRequest(
        name=model_name,
        version=model_version,
        task=task,
        estimator=training.describe(model.metadata["name"], fitted),
        metrics=json.loads(metrics_json),
        feature_names=features,
        data=dict(train_data.metadata["lineage"]),
        lineage=lineage,
        max_batch_size=triton_max_batch_size,
        onnx_target=runtimes.onnx_target(runtimes.runtime_for_target(serving_target), runtime_version or None),
    )
    card = packaging.package_model(fitted, X_test, request, packaged_model.path)
    packaged_model.metadata.update({
        "framework": "onnx", "model_name": card.name, "model_version": card.version,
        "onnx_sha256": card.files[f"{card.version}/model.onnx"], **card.metrics,
    })
