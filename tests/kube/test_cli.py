"""`pipeserve manifest` and `pipeserve deploy` (without a cluster), in-process through main()."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeserve.cli.main import main
from pipeserve.kube.schema import validate


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_manifest_renders_a_valid_isvc_from_the_packaged_model(capsys, iris_repo):
    code, out, err = _run(capsys, "manifest", str(iris_repo), "--storage-uri", "s3://models/iris/")
    assert code == 0, err
    (doc,) = list(yaml.safe_load_all(out))
    assert validate(doc) == []
    card = __import__("json").loads((iris_repo / "iris" / "model-card.json").read_text())
    ann = doc["metadata"]["annotations"]
    assert ann["pipeserve.dev/artifact-sha256"] == card["files"]["1/model.onnx"]
    assert ann["pipeserve.dev/data-fingerprint"] == card["data"]["fingerprint"]
    assert ann["pipeserve.dev/v2-model-path"] == "/v2/models/iris"


def test_manifest_writes_a_file_with_credentials(capsys, iris_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio123")
    target = tmp_path / "out" / "isvc.yaml"
    code, out, err = _run(
        capsys, "manifest", str(iris_repo / "iris"), "--storage-uri", "s3://mlpipeline/iris/",
        "--target", "triton-cpu", "--name", "iris-cpu", "--namespace", "ml",
        "--s3-credentials", "minio-creds", "--s3-endpoint", "minio-service.kubeflow:9000", "--s3-no-https",
        "--output", str(target),
    )
    assert code == 0, err
    assert out == "" and "wrote" in err
    docs = list(yaml.safe_load_all(target.read_text()))
    assert [d["kind"] for d in docs] == ["Secret", "ServiceAccount", "InferenceService"]
    assert all(validate(d) == [] for d in docs)
    assert docs[2]["spec"]["predictor"]["serviceAccountName"] == "minio-creds"
    assert docs[0]["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scale-metric", "qps"], "the CRD only accepts 'rps'"),
        (["--canary-traffic-percent", "10"], "only honoured in Knative mode"),
        (["--min-replicas", "0"], "scale to zero) is impossible with the hpa autoscaler"),
        (["--target", "sklearnserver", "--gpus", "0"], "loads exactly one .joblib/.pkl/.pickle file"),
        (["--target", "sklearnserver", "--gpus", "1"], "would sit idle"),
        (["--memory-limit", "4GB"], "is not a Kubernetes quantity"),
        (["--node-selector", "pool"], "must look like KEY=VALUE"),
        (["--s3-endpoint", "minio:9000"], "need --s3-credentials NAME"),
        (["--s3-credentials", "creds"], "need both an access key id and a secret access key"),
        (["--model", "wine"], "No model 'wine' in the repository; it holds: iris"),
        (["--runtime-version", "22.01-py3"], "Unknown kserve-tritonserver image tag '22.01-py3'"),
    ],
)
def test_manifest_bad_options_fail_in_one_line_with_exit_2(capsys, iris_repo, monkeypatch, argv, message):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    code, out, err = _run(capsys, "manifest", str(iris_repo), "--storage-uri", "s3://m/", *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pipeserve manifest: error: ") and message in err


def test_manifest_refuses_a_tampered_model_dir(capsys, iris_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(iris_repo, repo)
    (repo / "iris" / "config.pbtxt").write_text("tampered\n")
    code, out, err = _run(capsys, "manifest", str(repo), "--storage-uri", "s3://m/")
    assert code == 1 and out == "" and "does not match its model card" in err


def test_manifest_refuses_a_missing_model(capsys, tmp_path):
    code, _, err = _run(capsys, "manifest", str(tmp_path / "nope"), "--storage-uri", "s3://m/")
    assert code == 2 and "does not exist" in err


def test_deploy_dry_run_prints_what_it_would_apply(capsys, iris_repo):
    code, out, err = _run(capsys, "deploy", str(iris_repo), "--storage-uri", "s3://m/", "--dry-run")
    assert code == 0, err
    assert "would server-side apply (field manager pipeserve) InferenceService/iris" in err
    (doc,) = list(yaml.safe_load_all(out))
    assert validate(doc) == []


def test_deploy_without_a_cluster_fails_in_one_line(capsys, iris_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, out, err = _run(capsys, "deploy", str(iris_repo), "--storage-uri", "s3://m/")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "No Kubernetes cluster configured" in err and "--dry-run" in err


def test_deploy_with_an_unreachable_api_server_fails_in_one_line(capsys, iris_repo, tmp_path, monkeypatch):
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(config))
    code, _, err = _run(capsys, "deploy", str(iris_repo), "--storage-uri", "s3://m/")
    assert code == 1 and err.count("\n") == 1 and "https://127.0.0.1:1 is unreachable" in err
    code, _, err = _run(capsys, "deploy", str(iris_repo), "--storage-uri", "s3://m/", "--context", "prod")
    assert code == 1 and "No context 'prod' in the kubeconfig; it has: dead" in err
