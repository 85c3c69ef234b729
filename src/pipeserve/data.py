"""Datasets: built-in scikit-learn sets and tabular files, a deterministic split, schema and fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeserve.catalog import BUILTIN_DATASETS, BUILTIN_TARGET, CLASSIFICATION, REGRESSION, TASKS
from pipeserve.errors import ConfigError, DataError


@dataclass(frozen=True)
class Dataset:
    """A table of numeric features plus one target column.

    Args:
        frame: The whole table.
        target: Name of the target column.
        task: ``classification`` or ``regression``.
        source: Where it came from (built-in name, path or URL).
    """

    frame: pd.DataFrame
    target: str
    task: str
    source: str

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in self.frame.columns if c != self.target]


@dataclass(frozen=True)
class Split:
    """A deterministic train/test split of a Dataset, features as float32."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    target: str
    task: str


#: Suffixes of the tables :func:`load_dataset` reads (``.txt``: CSV).
DATASET_SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet", ".pq")
_PARQUET = (".parquet", ".pq")
_JSON = (".json",)


def read_table(source: str | Path, suffixes: Sequence[str] = DATASET_SUFFIXES, name: str = "file") -> pd.DataFrame:
    """Read a CSV, Parquet or JSON table from a path or an fsspec URL, chosen by its suffix.

    A JSON file holds records (``[{"col": value, ...}, ...]``), columns, or plain rows
    (``[[...], ...]``, columns then numbered 0, 1, ...), optionally inside a KServe v1 body
    ``{"instances": ...}``.

    Args:
        source: Path or URL (``s3://``, ``gs://``, ``https://`` with the matching fsspec backend).
        suffixes: The suffixes to accept (``.csv.gz`` is CSV; anything not Parquet or JSON is CSV).
        name: What messages call the source, e.g. ``--file``.

    Raises:
        DataError: Unsupported suffix, missing fsspec backend, unreadable or ragged table.
    """
    text = str(source)
    suffix = next((s for s in suffixes if text.lower().endswith(s)), None)
    if suffix is None:
        raise DataError(f"Unsupported {name} type {Path(text).name!r}: expected {_or(suffixes)}.")
    try:
        if suffix in _PARQUET:
            return pd.read_parquet(source)
        if suffix in _JSON:
            return _read_json(Path(source))
        return pd.read_csv(source)
    except ImportError as exc:
        raise DataError(
            f"Cannot read {text!r}: {exc}. Install the fsspec backend for this URL scheme "
            "(s3fs for s3://, gcsfs for gs://, aiohttp for https://)."
        ) from exc
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"Cannot read {text!r} as a table: {exc}") from exc


def _read_json(path: Path) -> pd.DataFrame:
    raw = json.loads(path.read_text())
    if isinstance(raw, dict) and "instances" in raw:  # a v1 request body
        raw = raw["instances"]
    if isinstance(raw, list) and raw and all(isinstance(r, list) for r in raw):
        lengths = sorted({len(r) for r in raw})
        if len(lengths) > 1:  # pandas would pad the short rows with NaN
            raise DataError(f"{str(path)!r} holds rows of different lengths ({lengths}); every row needs one value "
                            "per feature.")
    return pd.DataFrame(raw)


def _or(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


def non_numeric_columns(frame: pd.DataFrame) -> list[str]:
    """The names of the columns of ``frame`` that are not numbers (what no model here takes)."""
    return [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def infer_task(y: pd.Series) -> str:
    """Guess the task from the target: non-float or few distinct values means classification."""
    if not pd.api.types.is_float_dtype(y):
        return CLASSIFICATION
    if y.nunique() <= 20 and np.all(np.mod(y.dropna(), 1) == 0):
        return CLASSIFICATION
    return REGRESSION


def load_dataset(source: str, target: str | None = None, task: str | None = None) -> Dataset:
    """Load a built-in dataset by name, or a CSV/Parquet table from a path or fsspec URL.

    Args:
        source: Built-in name (iris, breast_cancer, wine, digits, diabetes), path or URL.
        target: Target column; required for files, ``target`` for built-ins.
        task: ``classification`` or ``regression``; inferred from the target when omitted.

    Raises:
        ConfigError: Unknown task or missing --target for a file.
        DataError: Unreadable file, missing target column, non-numeric or missing feature values.
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}; expected one of: {', '.join(TASKS)}.")
    if source in BUILTIN_DATASETS:
        builtin_task, loader = BUILTIN_DATASETS[source]
        if target not in (None, BUILTIN_TARGET):
            raise ConfigError(
                f"Built-in dataset {source!r} has target column {BUILTIN_TARGET!r}, got --target {target!r}."
            )
        frame, target, task = loader(), BUILTIN_TARGET, task or builtin_task
    else:
        if target is None:
            raise ConfigError(
                f"{source!r} is not a built-in dataset ({', '.join(BUILTIN_DATASETS)}), so it is read "
                "as a file and needs --target COLUMN."
            )
        if "://" not in source and not Path(source).is_file():
            raise DataError(
                f"Data file {source!r} does not exist. Give a CSV or Parquet path, an fsspec URL "
                f"(s3://, gs://, https://) or a built-in dataset: {', '.join(BUILTIN_DATASETS)}."
            )
        frame = read_table(source)
        if target not in frame.columns:
            raise DataError(
                f"Target column {target!r} not found in {source!r}; columns are: "
                f"{', '.join(map(str, frame.columns))}."
            )
    frame.columns = [str(c) for c in frame.columns]
    dataset = Dataset(frame=frame, target=target, task=task or infer_task(frame[target]), source=source)
    _check_features(dataset)
    return dataset


def _check_features(ds: Dataset) -> None:
    features = ds.frame[ds.feature_names]
    if features.shape[1] == 0:
        raise DataError(f"{ds.source!r} has no feature columns besides the target {ds.target!r}.")
    non_numeric = non_numeric_columns(features)
    if non_numeric:
        raise DataError(
            f"Feature columns must be numeric; these are not: {', '.join(non_numeric[:10])}. "
            "Encode them (e.g. one-hot) or drop them before training."
        )
    missing = features.columns[features.isna().any()].tolist()
    if missing:
        raise DataError(
            f"Feature columns have missing values: {', '.join(missing[:10])}. Impute or drop them."
        )
    if ds.frame[ds.target].isna().any():
        raise DataError(f"Target column {ds.target!r} has missing values; drop those rows.")
    if ds.task == REGRESSION and not pd.api.types.is_numeric_dtype(ds.frame[ds.target]):
        raise DataError(f"Regression needs a numeric target; {ds.target!r} is {ds.frame[ds.target].dtype}.")


def schema(ds: Dataset) -> dict[str, Any]:
    """Column names and dtypes, features first, in table order."""
    return {
        "features": [{"name": c, "dtype": str(ds.frame[c].dtype)} for c in ds.feature_names],
        "target": {"name": ds.target, "dtype": str(ds.frame[ds.target].dtype)},
    }


def fingerprint(frame: pd.DataFrame) -> str:
    """Content sha256 of a table: column names, dtypes and values (row order matters, index does not)."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def split_dataset(ds: Dataset, test_size: float = 0.2, random_state: int = 42) -> Split:
    """Split deterministically; classification splits are stratified when every class can be."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be between 0 and 1 (exclusive), got {test_size}.")
    X = ds.frame[ds.feature_names].to_numpy(dtype=np.float32)
    y = ds.frame[ds.target].to_numpy()
    stratify = None
    if ds.task == CLASSIFICATION:
        counts = pd.Series(y).value_counts()
        if len(counts) < 2:
            raise DataError(f"Classification needs at least 2 classes in {ds.target!r}; found {len(counts)}.")
        if counts.min() >= 2:
            stratify = y
    if len(y) < 4:
        raise DataError(f"{ds.source!r} has {len(y)} rows; at least 4 are needed to train and test.")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=stratify
    )
    return Split(X_train, X_test, y_train, y_test, ds.feature_names, ds.target, ds.task)


def split_frames(ds: Dataset, test_size: float = 0.2, random_state: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same split as split_dataset, as two tables (features as float32, then the target)."""
    split = split_dataset(ds, test_size, random_state)

    def frame(X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
        out = pd.DataFrame(X, columns=split.feature_names)
        out[split.target] = y
        return out

    return frame(split.X_train, split.y_train), frame(split.X_test, split.y_test)


def read_split_frame(path: str | Path, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a table written by split_frames back into (X float32, y, feature names).

    Read by pyarrow from the path itself: pandas.read_parquet hands pyarrow a Python file object,
    and when pyarrow's scanner thread releases it during interpreter shutdown the process aborts
    ("terminate called without an active exception", exit 134; seen in about 1 exit in 15).
    """
    import pyarrow.parquet as pq

    frame = pq.read_table(str(path)).to_pandas()
    features = [c for c in frame.columns if c != target]
    return frame[features].to_numpy(dtype=np.float32), frame[target].to_numpy(), features
