"""The load_data component: load a dataset and split it into train and test tables, and hand the
pipeserve library to every other step."""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Output


def load_data(
    source: str,
    train_data: Output[Dataset],
    test_data: Output[Dataset],
    library: Output[Artifact],
    target: str = "",
    task: str = "",
    test_size: float = 0.2,
    random_state: int = 42,
) -> NamedTuple("DataInfo", [("task", str), ("target", str), ("rows", int), ("fingerprint", str)]):
    """Load a built-in dataset or a CSV/Parquet table and split it deterministically.

    The first step also hands the pipeserve library to the others: on the stock image it unpacks
    the library it alone carries into the library artifact; where pipeserve is installed it copies
    that. Every other step puts the artifact first on sys.path.

    Args:
        source: Built-in dataset (iris, breast_cancer, wine, digits, diabetes), a path or an fsspec URL.
        train_data: Training table (Parquet; features as float32, then the target column).
        test_data: Held-out table, same layout.
        library: The pipeserve package this step imports, for every other step to import.
        target: Target column (required for files; empty for built-ins).
        task: classification or regression; empty to infer it from the target.
        test_size: Fraction of rows held out for evaluation.
        random_state: Seed of the split.

    Returns:
        task, target, rows and the content fingerprint (sha256) of the whole table.
    """
    import os
    import shutil
    import sys
    import tarfile
    from collections import namedtuple

    archive = globals().get("__KFP_EMBEDDED_ASSET_FILE")  # the stock image: the library this step carries
    if archive:
        with tarfile.open(archive) as tar:
            tar.extractall(library.path, filter="data")
    else:  # pipeserve is installed (kfp.local, an image built from the Dockerfile): hand that on
        import pipeserve

        shutil.copytree(os.path.dirname(pipeserve.__file__), os.path.join(library.path, "pipeserve"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, library.path)

    import pipeserve
    from pipeserve import data
    from pipeserve.lineage import data_lineage

    files = [os.path.join(d, f) for d, _, names in os.walk(library.path) for f in names]
    library.metadata.update({"version": pipeserve.__version__, "files": len(files),
                             "bytes": sum(os.path.getsize(f) for f in files)})
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
