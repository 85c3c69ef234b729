"""pipeserve.objectstore without a store: how a model location resolves (the S3 round trips are in
tests/cluster/test_s3.py, against the local cluster's versitygw)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeserve.errors import ConfigError
from pipeserve.objectstore import ENV_MODEL_CACHE, cache_dir_for, is_remote, local_model_path


@pytest.mark.parametrize(("location", "remote"), [("build/model", False), ("/abs/model", False),
                                                  ("file:///abs/model", False), ("s3://models/iris/", True),
                                                  ("gs://bucket/m", True)])
def test_is_remote(location: str, remote: bool) -> None:
    assert is_remote(location) is remote


def test_local_paths_and_file_uris_resolve_without_io(tmp_path: Path) -> None:
    assert local_model_path("build/model") == Path("build/model")
    assert local_model_path(tmp_path) == tmp_path
    assert local_model_path(f"file://{tmp_path}/a%20b") == tmp_path / "a b"


def test_unknown_schemes_are_refused_with_the_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Got the scheme ftp:// instead") as info:
        local_model_path("ftp://host/model", cache_dir=tmp_path)
    assert "s3://" in str(info.value)


def test_cache_folder_per_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = cache_dir_for("s3://models/iris/", tmp_path)
    assert one.parent == tmp_path / "s3" / "models" and one.name.startswith("iris-")
    assert cache_dir_for("s3://models/iris", tmp_path) == one  # a trailing slash names the same prefix
    assert cache_dir_for("s3://models/iris2", tmp_path) != one
    assert cache_dir_for("s3://models/../../etc", tmp_path).is_relative_to(tmp_path)
    monkeypatch.setenv(ENV_MODEL_CACHE, str(tmp_path / "env"))
    assert cache_dir_for("s3://b/k").is_relative_to(tmp_path / "env")
