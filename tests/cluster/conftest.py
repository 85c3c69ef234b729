"""The local control plane for tests/cluster: real kube-apiserver/etcd/controllers + the real KServe
controller and webhooks, pods simulated by kwok (see docs/local-cluster.md).

A session fixture uses a running local cluster (`.cluster/kubeconfig` answers) or starts one with
`cluster/localcluster.py up` and stops it at the end (only if it started it). When Go or the built
binaries are missing the tests fail, with what to run, instead of being skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("PIPESERVE_CLUSTER_DIR", ROOT / ".cluster")).resolve()
KUBECONFIG = STATE_DIR / "kubeconfig"
BIN_DIR = Path(os.environ.get("PIPESERVE_CLUSTER_BIN", ROOT / ".tools" / "cluster" / "bin")).resolve()
LOCALCLUSTER = ROOT / "cluster" / "localcluster.py"
BINARIES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kserve-manager",
            "versitygw"]  # cluster/localcluster.py BINARIES
UP_TIMEOUT_S = 600


def _answers(kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    from kubernetes import client, config

    try:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        client.VersionApi(api).get_code(_request_timeout=3)
        return True
    except Exception:  # noqa: BLE001 - anything but an answer means "not up"
        return False


def _preflight() -> None:
    missing = [b for b in BINARIES if not os.access(BIN_DIR / b, os.X_OK)]
    if shutil.which("go") is None:
        pytest.fail(
            "tests/cluster need Go >= 1.26 (the local cluster is built from the Go module proxy and reads its "
            "manifests from the Go module cache). Install Go (https://go.dev/dl/), then run `make cluster-build`.",
            pytrace=False,
        )
    if missing:
        pytest.fail(
            f"tests/cluster need the local-cluster binaries, missing in {BIN_DIR}: {', '.join(missing)}. "
            "Run `make cluster-build` (cold build: see docs/local-cluster.md for how long it takes).",
            pytrace=False,
        )
    if not (ROOT / ".tools" / "bin" / "kubectl").exists() and shutil.which("kubectl") is None:
        pytest.fail("tests/cluster need kubectl: run `make tools`", pytrace=False)


@pytest.fixture(scope="session")
def local_cluster() -> Path:
    """Path of an admin kubeconfig for a healthy local cluster."""
    was_up = _answers(KUBECONFIG)
    if not was_up:
        _preflight()
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.tools' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.monotonic()
    # `up` is idempotent: on a healthy cluster it returns at once; a broken one is restarted.
    proc = subprocess.run([sys.executable, str(LOCALCLUSTER), "up"], capture_output=True, text=True, env=env,
                          timeout=UP_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"`localcluster.py up` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}",
                    pytrace=False)
    print(f"\nlocal cluster {'reused' if was_up else 'started'} in {time.monotonic() - t0:.1f}s")
    yield KUBECONFIG
    if not was_up:
        subprocess.run([sys.executable, str(LOCALCLUSTER), "down"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def api_client(local_cluster: Path):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(local_cluster))


@pytest.fixture(scope="session")
def namespace(api_client):
    """A fresh namespace for this session, deleted at the end (the namespace controller runs)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"pipeserve-ct-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount admission plugin needs the `default` SA, created by kube-controller-manager.
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield name
    core.delete_namespace(name)


# The pinned helm and kubectl fixtures of the offline Kubernetes tests, for the scenario tests.
from kube.conftest import helm, kubectl  # noqa: E402,F401


def _write_kubeconfig(path: Path, server: str, ca_data: str, user: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    }))
    return path


@pytest.fixture(scope="session")
def kubeconfig_for(local_cluster, tmp_path_factory):
    """``kubeconfig_for(service_account, namespace) -> Path``: a kubeconfig holding a TokenRequest token."""
    import yaml

    admin = yaml.safe_load(local_cluster.read_text())
    cluster = admin["clusters"][0]["cluster"]
    folder = tmp_path_factory.mktemp("kubeconfigs")
    kubectl_bin = shutil.which("kubectl", path=f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")

    def make(account: str, namespace: str) -> Path:
        token = subprocess.run([kubectl_bin, "--kubeconfig", str(local_cluster), "create", "token", account, "-n",
                                namespace, "--duration=1h"], capture_output=True, text=True, check=True).stdout.strip()
        return _write_kubeconfig(folder / f"{namespace}-{account}.yaml", cluster["server"],
                                 cluster["certificate-authority-data"], {"token": token})

    return make


@pytest.fixture(scope="module")
def bare_apiserver(local_cluster, tmp_path_factory):
    """A second kube-apiserver on the same etcd under its own key prefix: a cluster with nothing installed.

    It is the real API server with an empty store (no KServe, no Knative, no KEDA CRDs), for the
    faults a cluster without KServe produces. Admin kubeconfig path; stopped at the end.
    """
    import json
    import socket

    import yaml

    state = json.loads((STATE_DIR / "state.json").read_text())
    argv = list(state["processes"]["kube-apiserver"]["argv"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [a for a in argv if not a.startswith(("--secure-port=", "--service-account-issuer="))]
    argv += [f"--secure-port={port}", f"--service-account-issuer=https://127.0.0.1:{port}",
             f"--etcd-prefix=/bare-{uuid.uuid4().hex[:8]}"]
    log = (tmp_path_factory.mktemp("bare") / "kube-apiserver.log").open("w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    admin = yaml.safe_load(local_cluster.read_text())
    server = f"https://127.0.0.1:{port}"
    kubeconfig = _write_kubeconfig(tmp_path_factory.mktemp("bare-kubeconfig") / "kubeconfig", server,
                                   admin["clusters"][0]["cluster"]["certificate-authority-data"],
                                   admin["users"][0]["user"])
    deadline = time.monotonic() + 90
    while not _answers(kubeconfig):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the bare kube-apiserver did not start; see {log.name}", pytrace=False)
        time.sleep(0.5)
    yield kubeconfig
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


# --------------------------------------------------------------------------------------------
# The S3 store (versitygw) and the KFP API double that `localcluster.py up` starts beside the
# control plane (docs/local-cluster.md).


class S3Store:
    """The local cluster's S3 store: endpoint URL, root keys, region (from .cluster/s3-credentials)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT``: the endpoint as KServe's ``serving.kserve.io/s3-endpoint`` wants it."""
        return self.endpoint.split("://", 1)[1]

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables boto3, s3fs and pipeserve read (plus MLflow's endpoint variable)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def filesystem(self):
        """A fresh s3fs filesystem on the store (no fsspec instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(key=self.access_key, secret=self.secret_key, endpoint_url=self.endpoint,
                                 client_kwargs={"region_name": self.region}, skip_instance_cache=True)


@pytest.fixture(scope="session")
def s3_store(local_cluster: Path) -> S3Store:
    """The local cluster's versitygw (buckets models, datasets, mlpipeline exist)."""
    creds_file = STATE_DIR / "s3-credentials"
    if not creds_file.exists():
        pytest.fail(f"{creds_file} is missing: the local cluster's S3 store did not start (see "
                    f"{STATE_DIR / 'logs' / 'versitygw.log'})", pytrace=False)
    values = dict(line.split("=", 1) for line in creds_file.read_text().splitlines()
                  if line and not line.startswith("#"))
    endpoint = (STATE_DIR / "s3-endpoint").read_text().strip()
    assert values["AWS_ENDPOINT_URL"] == endpoint
    return S3Store(endpoint, values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"], values["AWS_REGION"])


@pytest.fixture
def s3_env(s3_store: S3Store, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    """The store's AWS_* variables in this process's environment for one test."""
    for name, value in s3_store.env.items():
        monkeypatch.setenv(name, value)
    return s3_store


@pytest.fixture(scope="session")
def kfp_endpoint(local_cluster: Path) -> str:
    """URL of the local cluster's KFP API (kfp-api-double, a request-validating double: see docs/local-cluster.md)."""
    path = STATE_DIR / "kfp-endpoint"
    if not path.exists():
        pytest.fail(f"{path} is missing: kfp-api-double did not start (see "
                    f"{STATE_DIR / 'logs' / 'kfp-api-double.log'})", pytrace=False)
    return path.read_text().strip()


MLFLOW_BIN = ROOT / ".tools" / "mlflow-venv" / "bin" / "mlflow"


@pytest.fixture(scope="module")
def mlflow_on_s3(s3_store: S3Store, tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` (its own venv) whose --artifacts-destination is s3://models/mlflow-…/ on versitygw.

    Yields ``(url, destination)``.
    """
    from pipeserve.localserver import LocalServer, free_port

    if not MLFLOW_BIN.is_file():
        pytest.fail(f"{MLFLOW_BIN} is missing: run `make .tools/mlflow-venv/.installed`", pytrace=False)
    check = subprocess.run([str(MLFLOW_BIN.parent / "python"), "-c", "import boto3"], capture_output=True)
    if check.returncode != 0:
        pytest.fail(f"{MLFLOW_BIN.parent.parent} has no boto3, which `mlflow server` needs for an s3:// artifacts "
                    "destination: add boto3, botocore, s3transfer, jmespath to tests/registry/mlflow-server.txt",
                    pytrace=False)
    work = tmp_path_factory.mktemp("mlflow-s3")
    destination = f"s3://models/mlflow-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**s3_store.env, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = LocalServer.command(
        [str(MLFLOW_BIN), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--serve-artifacts",
         "--artifacts-destination", destination],
        f"http://127.0.0.1:{port}/health", log_path=work / "server.log", timeout=120, env=env)
    with server:
        yield server.url, destination
