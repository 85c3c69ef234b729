"""What ``s3://`` means for pipeserve, against the local cluster's real S3 store (versitygw).

Datasets read through fsspec/s3fs; a model repository uploaded and served from its storage URI
(`pipeserve serve s3://…`: downloaded, verified against the card, served); the registry's artifacts
on S3 behind a real `mlflow server`; the Secret + ServiceAccount pair `pipeserve manifest
--s3-credentials` emits, applied to the control plane; and KServe's own storage initializer
(kserve-storage 0.21.0, run as its init container runs it, with the environment KServe's pod webhook
injected into a real predictor pod) fetching the repository into a folder `pipeserve serve` serves.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from clusterkit import empty_namespace, new_namespace, wait_for
from helpers import spawn_cli
from registry.conftest import renamed

from pipeserve.client import Predictor
from pipeserve.data import load_dataset, read_table
from pipeserve.errors import DataError
from pipeserve.localserver import LocalServer
from pipeserve.modelcard import find_model_dirs, hash_files, read_card, verify_files
from pipeserve.objectstore import cache_dir_for, fetch_model_repository
from pipeserve.registry import open_registry
from pipeserve.workflow import fit_and_package

from .conftest import ROOT, S3Store

pytestmark = pytest.mark.cluster

KSERVE_STORAGE_PYTHON = ROOT / ".tools" / "kserve-storage-venv" / "bin" / "python"
MLFLOW_BIN = ROOT / ".tools" / "mlflow-venv" / "bin" / "mlflow"


def _prefix(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _upload(store: S3Store, folder: Path, uri: str) -> list[str]:
    """Upload every file under ``folder`` to ``uri`` (keys relative to it); return the keys."""
    fs = store.filesystem()
    base = uri.removeprefix("s3://").rstrip("/")
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{base}/{path.relative_to(folder).as_posix()}"
        fs.put_file(str(path), key)
        keys.append(key)
    return keys


def _tree(folder: Path) -> dict[str, str]:
    from pipeserve.modelcard import sha256_file

    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the store ---------------------------------------------------------------------------------


def test_the_store_has_the_buckets_and_checks_signatures(s3_store: S3Store) -> None:
    fs = s3_store.filesystem()
    assert {"models", "datasets", "mlpipeline"} <= set(fs.ls(""))
    key = f"datasets/{_prefix('hello')}.txt"
    fs.pipe_file(key, b"hello")
    assert fs.cat_file(key) == b"hello"
    import s3fs

    wrong = s3fs.S3FileSystem(key=s3_store.access_key, secret="not-the-secret", endpoint_url=s3_store.endpoint,
                              skip_instance_cache=True)
    with pytest.raises(PermissionError):
        wrong.cat_file(key)


# -- datasets ----------------------------------------------------------------------------------


def test_datasets_are_read_from_s3(s3_env: S3Store, tmp_path: Path) -> None:
    frame = load_dataset("iris").frame
    prefix = _prefix("iris")
    fs = s3_env.filesystem()
    with fs.open(f"datasets/{prefix}/iris.csv", "w") as fh:
        frame.to_csv(fh, index=False)
    frame.to_parquet(tmp_path / "iris.parquet")
    fs.put_file(str(tmp_path / "iris.parquet"), f"datasets/{prefix}/iris.parquet")

    uri = f"s3://datasets/{prefix}/iris.csv"
    ds = load_dataset(uri, target="target")  # endpoint and keys from AWS_ENDPOINT_URL & co. only
    pd.testing.assert_frame_equal(ds.frame, frame, check_dtype=False)
    assert (ds.source, ds.task) == (uri, "classification")
    pd.testing.assert_frame_equal(read_table(f"s3://datasets/{prefix}/iris.parquet"), frame)
    fit = fit_and_package(uri, tmp_path / "repo", name="iris", target="target")
    assert fit.card.data["source"] == uri and fit.evaluation.metrics["accuracy"] > 0.9
    with pytest.raises(DataError, match=f"s3://datasets/{prefix}/missing.csv"):
        load_dataset(f"s3://datasets/{prefix}/missing.csv", target="target")


# -- pipeserve serve s3://… --------------------------------------------------------------------


def test_serve_downloads_verifies_and_serves_a_repository_from_s3(s3_store: S3Store, iris_fit, iris_repo: Path,
                                                                  tmp_path: Path) -> None:
    uri = f"s3://models/{_prefix('repo')}/"
    keys = _upload(s3_store, iris_repo, uri)
    assert any(k.endswith("iris/model-card.json") for k in keys)
    env = {**s3_store.env, "PIPESERVE_MODEL_CACHE": str(tmp_path / "cache")}
    rows = iris_fit.split.X_test[:10]
    with LocalServer.serve(uri, env=env) as server:
        labels = Predictor(server.url, "iris").predict(rows)
    np.testing.assert_array_equal(labels.ravel(), iris_fit.model.predict(rows))
    cached = cache_dir_for(uri.rstrip("/"), tmp_path / "cache")
    assert _tree(cached) == _tree(iris_repo)  # the layout KServe's initializer writes: keys under the prefix


def test_serve_refuses_a_tampered_or_missing_repository(s3_store: S3Store, iris_repo: Path, tmp_path: Path) -> None:
    uri = f"s3://models/{_prefix('tampered')}"
    _upload(s3_store, iris_repo, uri)
    s3_store.filesystem().pipe_file(f"{uri.removeprefix('s3://')}/iris/config.pbtxt", b'name: "iris"\n# changed\n')
    env = {**s3_store.env, "PIPESERVE_MODEL_CACHE": str(tmp_path / "cache")}
    proc = spawn_cli("serve", uri, "--http-port", "0", env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"Model directory {uri}/iris does not match its model card: config.pbtxt: sha256" in proc.stderr
    assert not cache_dir_for(uri, tmp_path / "cache").exists()  # nothing unverified is kept

    proc = spawn_cli("serve", f"s3://models/{_prefix('nothing')}/", "--http-port", "0", env=env, timeout=120)
    assert proc.returncode == 2 and "Nothing is stored under s3://models/" in proc.stderr, proc.stderr
    proc = spawn_cli("serve", uri, "--http-port", "0", timeout=120,
                     env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert proc.returncode == 1 and "AWS_SECRET_ACCESS_KEY" in proc.stderr, proc.stderr


def test_a_second_fetch_replaces_the_cached_copy(s3_env: S3Store, iris_repo: Path, tmp_path: Path) -> None:
    uri = f"s3://models/{_prefix('refetch')}"
    _upload(s3_env, iris_repo, uri)
    first = fetch_model_repository(uri, cache_dir=tmp_path)
    (first / "stale.txt").write_text("left over from an older download")
    second = fetch_model_repository(uri, cache_dir=tmp_path)
    assert second == first and _tree(second) == _tree(iris_repo)
    assert [p.name for p in tmp_path.rglob("*.partial-*")] == [] and [p.name for p in tmp_path.rglob("*.old-*")] == []


# -- the registry's artifacts on S3 ------------------------------------------------------------


def test_registry_storage_uri_is_where_the_files_are_on_s3(mlflow_on_s3, s3_store: S3Store, iris_fit,
                                                            tmp_path: Path) -> None:
    url, destination = mlflow_on_s3
    registry = open_registry(url, artifacts_destination=destination)
    name = f"iris{uuid.uuid4().hex[:8]}"
    version = registry.register(renamed(iris_fit, name, tmp_path / "repo"))
    uri = registry.storage_uri(f"{name}/{version.version}")
    assert uri.startswith(destination + "/") and version.source.startswith("mlflow-artifacts:")
    fs = s3_store.filesystem()
    keys = fs.find(uri.removeprefix("s3://"))
    card_key = next(k for k in keys if k.endswith(f"{name}/model-card.json"))
    card = json.loads(fs.cat_file(card_key))
    assert card["version"] == version.version
    fetched = fetch_model_repository(uri, cache_dir=tmp_path / "cache",
                                     storage_options={"key": s3_store.access_key, "secret": s3_store.secret_key,
                                                      "endpoint_url": s3_store.endpoint})
    assert [d.name for d in find_model_dirs(fetched)] == [name]
    verify_files(fetched / name, read_card(fetched / name))


# -- KServe: our Secret + ServiceAccount, the pod webhook's env, the storage initializer -------------


def _kserve_entrypoint() -> Path:
    """KServe's storage-initializer entrypoint script, from the KServe module the cluster runs."""
    out = subprocess.run(["go", "mod", "download", "-json", "github.com/kserve/kserve"], cwd=ROOT / "cluster" / "go" /
                         "kserve", capture_output=True, text=True, check=True).stdout
    script = Path(json.loads(out)["Dir"]) / "python" / "storage-initializer" / "scripts" / "initializer-entrypoint"
    assert script.is_file(), script
    return script


def test_kserve_storage_initializer_fetches_what_we_emit_and_pipeserve_serves_it(
        s3_store: S3Store, local_cluster: Path, iris_fit, iris_repo: Path, tmp_path: Path) -> None:
    from pipeserve.kube.client import Cluster

    if not KSERVE_STORAGE_PYTHON.is_file():
        pytest.fail(f"{KSERVE_STORAGE_PYTHON} is missing: run `make .tools/kserve-storage-venv/.installed`",
                    pytrace=False)
    storage_uri = f"s3://models/{_prefix('kserve')}/"
    _upload(s3_store, iris_repo, storage_uri)

    # 1. What the builder emits: the Secret + ServiceAccount pair and the InferenceService that names it.
    proc = spawn_cli("manifest", str(iris_repo), "--storage-uri", storage_uri, "--target", "triton-cpu",
                     "--s3-credentials", "model-reader", "--s3-endpoint", s3_store.host_port, "--s3-no-https",
                     env={"AWS_ACCESS_KEY_ID": s3_store.access_key, "AWS_SECRET_ACCESS_KEY": s3_store.secret_key})
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert [d["kind"] for d in docs] == ["Secret", "ServiceAccount", "InferenceService"]

    # 2. Applied to the control plane: KServe's controller makes the Deployment, its pod webhook the init container.
    cluster = Cluster(kubeconfig=str(local_cluster)).connect()
    ns = new_namespace(cluster, "s3")
    stored = cluster.apply_objects([{**d, "metadata": {**d["metadata"], "namespace": ns}} for d in docs])
    isvc = next(d for d in stored if d["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "model-reader"
    try:
        pods = wait_for(lambda: cluster.list("v1", "Pod", ns), "the predictor pod")
        init = next(c for c in pods[0]["spec"]["initContainers"] if c["name"] == "storage-initializer")
        assert init["args"] == [storage_uri, "/mnt/models"]
        secret = cluster.get("v1", "Secret", "model-reader", ns)
        env = {}
        for var in init.get("env", []):  # resolve secretKeyRefs as the kubelet would
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "model-reader"
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
            else:
                env[var["name"]] = var["value"]
        # What KServe 0.20's webhook derives from the Secret's annotations (plus its Hugging Face defaults).
        assert {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT", "AWS_ENDPOINT_URL",
                                    "S3_USE_HTTPS", "S3_VERIFY_SSL")} == {
            "AWS_ACCESS_KEY_ID": s3_store.access_key, "AWS_SECRET_ACCESS_KEY": s3_store.secret_key,
            "S3_ENDPOINT": s3_store.host_port, "AWS_ENDPOINT_URL": s3_store.endpoint, "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "1"}
    finally:
        empty_namespace(cluster, ns)

    # 3. The storage initializer, with exactly that environment and those arguments (/mnt/models moved into tmp).
    mnt = tmp_path / "mnt" / "models"
    run_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    proc = subprocess.run([str(KSERVE_STORAGE_PYTHON), str(_kserve_entrypoint()), init["args"][0], str(mnt)],
                          env=run_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(_tree(mnt)) == sorted(hash_files(iris_repo) | {"iris/model-card.json": ""})
    assert _tree(mnt) == _tree(iris_repo)

    # 4. pipeserve serves the folder the initializer wrote.
    rows = iris_fit.split.X_test[:10]
    with LocalServer.serve(mnt) as server:
        labels = Predictor(server.url, "iris").predict(rows)
    np.testing.assert_array_equal(labels.ravel(), iris_fit.model.predict(rows))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
