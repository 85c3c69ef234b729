"""The load_data component: load a dataset and split it into train and test tables."""

from typing import NamedTuple

from kfp.dsl import Dataset, Output


def load_data(
    source: str,
    train_data: Output[Dataset],
    test_data: Output[Dataset],
    target: str = "",
    task: str = "",
    test_size: float = 0.2,
    random_state: int = 42,
) -> NamedTuple("DataInfo", [("task", str), ("target", str), ("rows", int), ("fingerprint", str)]):
    """Load a built-in dataset or a CSV/Parquet table and split it deterministically.

    Args:
        source: Built-in dataset (iris, breast_cancer, wine, digits, diabetes), a path or an fsspec URL.
        train_data: Training table (Parquet; features as float32, then the target column).
        test_data: Held-out table, same layout.
        target: Target column (required for files; empty for built-ins).
        task: classification or regression; empty to infer it from the target.
        test_size: Fraction of rows held out for evaluation.
        random_state: Seed of the split.

    Returns:
        task, target, rows and the content fingerprint (sha256) of the whole table.
    """
    from collections import namedtuple

    from pipeserve import data
    from pipeserve.lineage import data_lineage

    ds = data.load_dataset(source, target=target or None, task=task or None)
    train, test = data.split_frames(ds, test_size=test_size, random_state=random_state)
    train.to_parquet(train_data.path, index=False)
    test.to_parquet(test_data.path, index=False)
    lineage = data_lineage(ds, test_size, random_state)
    for artifact, frame in ((train_data, train), (test_data, test)):
        artifact.metadata.update({"task": ds.task, "target": ds.target, "rows": len(frame),
                                  "source": source, "fingerprint": lineage["fingerprint"]})
    # The whole lineage rides on the train artifact, for the model card downstream.
    train_data.metadata["lineage"] = lineage
    DataInfo = namedtuple("DataInfo", ["task", "target", "rows", "fingerprint"])
    return DataInfo(ds.task, ds.target, len(ds.frame), lineage["fingerprint"])
