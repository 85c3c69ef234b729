"""The evaluate component: metrics, confusion matrix and ROC for the KFP UI, and a Markdown model card."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    model: Input[Model],
    train_data: Input[Dataset],
    test_data: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    model_card: Output[Markdown],
    model_name: str = "model",
    library: Input[Artifact] = None,
) -> str:
    """Evaluate the model on the held-out split.

    Args:
        model: Fitted estimator from train.
        train_data: Training table (carries the data lineage in its metadata).
        test_data: Held-out table from load_data.
        metrics: Scalar metrics (KFP UI: metrics table, run comparison).
        classification_metrics: Confusion matrix and ROC curve (classification only).
        model_card: Markdown summary (KFP UI: Markdown viewer).
        model_name: Model name shown in the Markdown summary.
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The scalar metrics as a JSON object.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json

    from pipeserve import data, evaluation, training

    task, target = test_data.metadata["task"], test_data.metadata["target"]
    fitted = training.load_estimator(model.path)
    X, y, _ = data.read_split_frame(test_data.path, target)
    result = evaluation.evaluate(fitted, X, y, task)
    for key, value in result.metrics.items():
        metrics.log_metric(key, value)
    if result.confusion_matrix:
        classification_metrics.log_confusion_matrix([str(c) for c in result.labels], result.confusion_matrix)
        for point in result.roc:
            classification_metrics.log_roc_data_point(point["fpr"], point["tpr"], point["threshold"])
    estimator = training.describe(model.metadata["name"], fitted)
    with open(model_card.path, "w") as fh:
        fh.write(evaluation.model_card_markdown(
            model_name, task, estimator, dict(train_data.metadata["lineage"]), result))
    return json.dumps(result.metrics, sort_keys=True)
