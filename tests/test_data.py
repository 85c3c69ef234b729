"""pipeserve.data: built-in sets, files, split, schema, fingerprint, and the errors users hit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeserve import catalog, data
from pipeserve.errors import ConfigError, DataError


@pytest.mark.parametrize("name", sorted(catalog.BUILTIN_DATASETS))
def test_builtin_datasets_load_with_numeric_features(name):
    ds = data.load_dataset(name)
    assert ds.target == "target"
    assert ds.task == catalog.BUILTIN_DATASETS[name][0]
    assert ds.feature_names and "target" not in ds.feature_names
    assert all(pd.api.types.is_numeric_dtype(ds.frame[c]) for c in ds.feature_names)


def test_csv_and_parquet_give_the_same_dataset(tmp_path):
    frame = data.load_dataset("iris").frame.rename(columns={"target": "species"})
    frame.to_csv(tmp_path / "iris.csv", index=False)
    frame.to_parquet(tmp_path / "iris.parquet", index=False)
    from_csv = data.load_dataset(str(tmp_path / "iris.csv"), target="species")
    from_parquet = data.load_dataset(str(tmp_path / "iris.parquet"), target="species")
    assert from_csv.task == from_parquet.task == "classification"
    assert data.fingerprint(from_csv.frame) == data.fingerprint(from_parquet.frame)


def test_fsspec_url_is_read(tmp_path):
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0, 1, 0, 1, 0, 1]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = data.load_dataset(f"file://{tmp_path}/t.csv", target="y")
    assert ds.frame.shape == (6, 2)


def test_split_is_deterministic_stratified_and_float32():
    ds = data.load_dataset("iris")
    a, b = data.split_dataset(ds), data.split_dataset(ds)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert a.X_train.dtype == np.float32
    assert len(a.y_test) == 30
    assert sorted(np.bincount(a.y_test)) == [10, 10, 10]  # stratified
    other = data.split_dataset(ds, random_state=7)
    assert not np.array_equal(a.X_test, other.X_test)


def test_split_frames_round_trip(tmp_path):
    ds = data.load_dataset("wine")
    train, test = data.split_frames(ds)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    X, y, features = data.read_split_frame(tmp_path / "test.parquet", "target")
    split = data.split_dataset(ds)
    np.testing.assert_array_equal(X, split.X_test)
    np.testing.assert_array_equal(y, split.y_test)
    assert features == split.feature_names


def test_fingerprint_changes_with_content_not_index():
    frame = data.load_dataset("iris").frame
    assert data.fingerprint(frame) == data.fingerprint(frame.set_axis(range(100, 250)))
    changed = frame.copy()
    changed.iloc[0, 0] += 0.1
    assert data.fingerprint(changed) != data.fingerprint(frame)
    assert data.fingerprint(frame).startswith("sha256:") and len(data.fingerprint(frame)) == 71


def test_schema_lists_features_then_target():
    schema = data.schema(data.load_dataset("diabetes"))
    assert [f["name"] for f in schema["features"]][:2] == ["age", "sex"]
    assert schema["target"] == {"name": "target", "dtype": "float64"}


def test_task_inference():
    assert data.infer_task(pd.Series(["a", "b"])) == "classification"
    assert data.infer_task(pd.Series([0.0, 1.0, 1.0])) == "classification"
    assert data.infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"


@pytest.mark.parametrize(
    ("frame", "target", "message"),
    [
        (pd.DataFrame({"a": [1, 2, 3, 4], "b": list("wxyz"), "y": [0, 1, 0, 1]}), "y",
         "must be numeric; these are not: b"),
        (pd.DataFrame({"a": [1.0, None, 3, 4], "y": [0, 1, 0, 1]}), "y", "missing values: a"),
        (pd.DataFrame({"a": [1, 2, 3, 4], "y": [0, 1, 0, 1]}), "z", "Target column 'z' not found"),
        (pd.DataFrame({"y": [0, 1, 0, 1]}), "y", "no feature columns"),
    ],
)
def test_bad_tables_raise_data_error(tmp_path, frame, target, message):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        data.load_dataset(str(path), target=target)


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_dataset(str(tmp_path / "missing.csv"), target="y")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(DataError, match="Unsupported file type"):
        data.load_dataset(str(tmp_path / "t.json"), target="y")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="Cannot read"):
        data.load_dataset(str(tmp_path / "bad.parquet"), target="y")
    with pytest.raises(ConfigError, match="needs --target"):
        data.load_dataset(str(tmp_path / "t.json"))
    with pytest.raises(ConfigError, match="Unknown task"):
        data.load_dataset("iris", task="clustering")
    with pytest.raises(ConfigError, match="test_size"):
        data.split_dataset(data.load_dataset("iris"), test_size=1.5)


def test_single_class_is_refused(tmp_path):
    path = tmp_path / "one.csv"
    pd.DataFrame({"a": [1, 2, 3, 4], "y": ["x"] * 4}).to_csv(path, index=False)
    with pytest.raises(DataError, match="at least 2 classes"):
        data.split_dataset(data.load_dataset(str(path), target="y"))


def test_read_table_by_suffix(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    frame.to_csv(tmp_path / "t.csv.gz", index=False)
    frame.to_parquet(tmp_path / "t.pq")
    (tmp_path / "t.txt").write_text("a,b\n1.0,3.0\n2.0,4.0\n")
    for name in ("t.csv.gz", "t.pq", "t.txt"):
        pd.testing.assert_frame_equal(data.read_table(tmp_path / name), frame)
    with pytest.raises(DataError, match=r"Unsupported --file type 't.txt': expected .csv or .json"):
        data.read_table(tmp_path / "t.txt", (".csv", ".json"), name="--file")


@pytest.mark.parametrize(
    ("content", "columns"),
    [
        ('[{"a": 1, "b": 2}, {"a": 3, "b": 4}]', ["a", "b"]),  # records
        ('{"a": [1, 3], "b": [2, 4]}', ["a", "b"]),  # columns
        ("[[1, 2], [3, 4]]", [0, 1]),  # plain rows
        ('{"instances": [[1, 2], [3, 4]]}', [0, 1]),  # a v1 request body
    ],
    ids=["records", "columns", "rows", "v1-body"],
)
def test_read_table_json(tmp_path, content, columns):
    (tmp_path / "t.json").write_text(content)
    frame = data.read_table(tmp_path / "t.json", (".json",))
    assert list(frame.columns) == columns and frame.to_numpy().tolist() == [[1, 2], [3, 4]]


def test_read_table_refuses_ragged_json_rows_and_bad_json(tmp_path):
    (tmp_path / "ragged.json").write_text("[[1, 2, 3], [4, 5]]")
    with pytest.raises(DataError, match=r"rows of different lengths \(\[2, 3\]\)"):
        data.read_table(tmp_path / "ragged.json", (".json",))
    (tmp_path / "bad.json").write_text("[[1, 2")
    with pytest.raises(DataError, match="Cannot read .* as a table"):
        data.read_table(tmp_path / "bad.json", (".json",))


def test_non_numeric_columns():
    frame = pd.DataFrame({"a": [1.0], "b": ["x"], 3: [True], "d": [2]})
    assert data.non_numeric_columns(frame) == ["b"]
