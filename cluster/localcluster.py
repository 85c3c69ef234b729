#!/usr/bin/env python3
"""A real local Kubernetes control plane with the real KServe controller, no Docker, no kubelet.

Runs, as plain processes bound to 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler (all built from source by cluster/build.sh), kwok (two fake nodes that make the
pods scheduled on them Running/Ready), and the KServe controller manager with its admission
webhooks registered. Pods never run: no image is pulled and nothing serves inference.
Beside it: versitygw, a real S3-compatible object store (posix backend under .cluster/data/s3,
buckets models, datasets, mlpipeline; endpoint in .cluster/s3-endpoint, keys in
.cluster/s3-credentials), and kfp-api-double, a request-validating double of the KFP API
server (cluster/kfp_api_double.py; URL in .cluster/kfp-endpoint).

    localcluster.py up       start it (idempotent: a healthy cluster is left as it is)
    localcluster.py down     stop every process it started (by PID) and remove .cluster/
    localcluster.py status   processes, ports, memory (exit 1 if state exists but is unhealthy)
    localcluster.py env      print `export KUBECONFIG=...` (--s3: also the AWS_* variables of the S3 store)

State (kubeconfig, certificates, PIDs, logs, etcd data) lives in .cluster/ at the repository root
(PIPESERVE_CLUSTER_DIR overrides it); binaries come from .tools/cluster/bin (PIPESERVE_CLUSTER_BIN).
Manifests that go into the cluster (CRDs, the inferenceservice-config ConfigMap, RBAC, webhooks,
serving runtimes, kwok stages) are read from the Go module cache at start time, never from files
copied into this repository.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SRC = ROOT / "cluster"
STATE_DIR = Path(os.environ.get("PIPESERVE_CLUSTER_DIR", ROOT / ".cluster")).resolve()
BIN_DIR = Path(os.environ.get("PIPESERVE_CLUSTER_BIN", ROOT / ".tools" / "cluster" / "bin")).resolve()
KUBECONFIG = STATE_DIR / "kubeconfig"
STATE_FILE = STATE_DIR / "state.json"

K8S_VERSION = "v1.34.5"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
KSERVE_NAMESPACE = "kserve"
KSERVE_SA = "kserve-controller-manager"
GPU_NODE = "gpu-node-0"
CPU_NODE = "cpu-node-0"
GPUS_PER_NODE = 2
# The control plane's binaries, in start order.
CORE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kserve-manager"]
# Beside it: the S3 store (a binary) and the KFP API double (a Python process). `up` on a healthy
# control plane starts whichever of these is missing, without restarting the rest.
S3 = "versitygw"
KFP = "kfp-api-double"
ADDONS = [S3, KFP]
# Everything, in start order (down stops them in reverse).
COMPONENTS = CORE + ADDONS
BINARIES = CORE + [S3]
S3_BUCKETS = ("models", "datasets", "mlpipeline")
S3_REGION = "us-east-1"
S3_ENDPOINT_FILE = STATE_DIR / "s3-endpoint"
S3_CREDENTIALS_FILE = STATE_DIR / "s3-credentials"
KFP_ENDPOINT_FILE = STATE_DIR / "kfp-endpoint"
# Never hand these out: 8080 is used by other tools on developer machines.
RESERVED_PORTS = {8080}


class ClusterError(RuntimeError):
    """A failure with a message meant for the user (printed without a traceback)."""


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# small helpers


def free_port(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken and port not in RESERVED_PORTS:
            taken.add(port)
            return port
    raise ClusterError("could not find a free loopback port")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25,
             proc_names: tuple[str, ...] = ()) -> Any:
    """Poll check() until it returns something truthy; fail with the log tails of proc_names."""
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        for name in proc_names:
            pid = _state_pids().get(name)
            if pid and not pid_alive(pid):
                raise ClusterError(f"{name} exited while waiting for {what}\n{log_tail(name)}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_err = exc
        time.sleep(interval)
    tails = "\n".join(log_tail(n) for n in proc_names)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f" (last error: {last_err})" if last_err else "") + (f"\n{tails}" if tails else ""))


def log_tail(name: str, lines: int = 25) -> str:
    path = STATE_DIR / "logs" / f"{name}.log"
    if not path.exists():
        return f"--- {path}: missing"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(text)} lines of {path}:\n" + "\n".join(text)


def run(cmd: list[str], *, input: str | None = None, check: bool = True, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise ClusterError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return proc


def pid_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: identifies a process, so a reused PID is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_state() -> dict:
    if STATE_FILE.exists():
        return json.loads(STATE_FILE.read_text())
    return {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(STATE_FILE)


def _state_pids() -> dict[str, int]:
    return {n: p["pid"] for n, p in load_state().get("processes", {}).items()}


def owned_pid(entry: dict) -> int | None:
    """The PID of a process we started, if it is still that same process."""
    pid = entry.get("pid")
    if pid and pid_alive(pid) and pid_start_time(pid) == entry.get("start_time"):
        return pid
    return None


# --------------------------------------------------------------------------------------------
# tools: binaries, kubectl, Go module cache


def require_binaries(names: list[str] = BINARIES) -> dict[str, Path]:
    missing = [n for n in names if not os.access(BIN_DIR / n, os.X_OK)]
    if missing:
        go = shutil.which("go")
        hint = ("run `make cluster-build` (or cluster/build.sh); the first build takes a while"
                if go else
                "Go is not installed: install Go >= 1.26 (https://go.dev/dl/) with the Go module proxy "
                "reachable, then run `make cluster-build`")
        raise ClusterError(f"missing cluster binaries in {BIN_DIR}: {', '.join(missing)}\n  {hint}")
    return {n: BIN_DIR / n for n in names}


def kubectl_path() -> str:
    for cand in (ROOT / ".tools" / "bin" / "kubectl", shutil.which("kubectl")):
        if cand and os.access(cand, os.X_OK):
            return str(cand)
    raise ClusterError("kubectl not found: run `make tools` (pinned kubectl 1.34.5 into .tools/bin)")


def module_dirs() -> dict[str, Path]:
    """Directories (in GOMODCACHE) of the modules whose manifests we install, at the versions the
    wrapper modules pin. `go mod download` fetches any that are missing (needs the module proxy)."""
    go = shutil.which("go")
    if not go:
        raise ClusterError("`go` not found: the cluster reads KServe/KEDA/Knative/kwok manifests from the Go "
                           "module cache; install Go >= 1.26 and run `make cluster-build`")
    wanted = {
        "kserve": ("kserve", "github.com/kserve/kserve"),
        "keda": ("kserve", "github.com/kedacore/keda/v2"),
        "knative-serving": ("kserve", "knative.dev/serving"),
        "kwok": ("kwok", "sigs.k8s.io/kwok"),
    }
    dirs: dict[str, Path] = {}
    for key, (wrapper, mod) in wanted.items():
        out = run([go, "mod", "download", "-json", mod], cwd=CLUSTER_SRC / "go" / wrapper).stdout
        info = json.loads(out)
        if info.get("Error"):
            raise ClusterError(f"go mod download {mod}: {info['Error']}")
        dirs[key] = Path(info["Dir"])
        dirs[key + "@version"] = info["Version"]  # type: ignore[assignment]
    return dirs


# --------------------------------------------------------------------------------------------
# certificates (openssl)


def openssl(*args: str) -> None:
    run(["openssl", *args])


def make_certs(pki: Path) -> None:
    if not shutil.which("openssl"):
        raise ClusterError("openssl not found: apt-get install openssl")
    pki.mkdir(parents=True, exist_ok=True)

    def key(name: str) -> str:
        path = pki / f"{name}.key"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
        return str(path)

    def ca(name: str, cn: str) -> None:
        k = key(name)
        openssl("req", "-x509", "-new", "-key", k, "-sha256", "-days", "3650", "-subj", f"/CN={cn}",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", str(pki / f"{name}.crt"))

    def leaf(name: str, ca_name: str, subj: str, *, server_sans: str | None = None) -> None:
        k = key(name)
        csr = pki / f"{name}.csr"
        openssl("req", "-new", "-key", k, "-subj", subj, "-out", str(csr))
        ext = pki / f"{name}.ext"
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        if server_sans:
            lines += ["extendedKeyUsage=serverAuth", f"subjectAltName={server_sans}"]
        else:
            lines += ["extendedKeyUsage=clientAuth"]
        ext.write_text("\n".join(lines) + "\n")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / f"{ca_name}.crt"), "-CAkey",
                str(pki / f"{ca_name}.key"), "-CAcreateserial", "-days", "3650", "-sha256",
                "-extfile", str(ext), "-out", str(pki / f"{name}.crt"))
        csr.unlink()
        ext.unlink()

    ca("ca", "pipeserve-local-ca")
    leaf("apiserver", "ca", "/CN=kube-apiserver",
         server_sans="IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                     "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")
    leaf("admin", "ca", "/O=system:masters/CN=pipeserve-admin")
    # Bootstrap RBAC (created by the API server) already binds these users to their roles.
    leaf("kube-controller-manager", "ca", "/CN=system:kube-controller-manager")
    leaf("kube-scheduler", "ca", "/CN=system:kube-scheduler")
    # kwok writes node and pod status for nodes it does not run: it needs broad rights.
    leaf("kwok", "ca", "/O=system:masters/CN=kwok")
    # ServiceAccount token signing key pair.
    key("sa")
    openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    # KServe's webhook server: its own CA, a serving certificate for 127.0.0.1.
    ca("webhook-ca", "kserve-webhook-ca")
    leaf("webhook", "webhook-ca", "/CN=kserve-webhook-server", server_sans="IP:127.0.0.1,DNS:localhost")
    for p in pki.glob("*.srl"):
        p.unlink()


def b64file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca: Path, user: str, *, cert: Path | None = None,
                     key: Path | None = None, token: str | None = None) -> None:
    user_entry: dict[str, str] = {}
    if cert and key:
        user_entry = {"client-certificate-data": b64file(cert), "client-key-data": b64file(key)}
    if token:
        user_entry = {"token": token}
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "pipeserve-local", "cluster": {"server": server, "certificate-authority-data": b64file(ca)}},
        ],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": "pipeserve-local", "context": {"cluster": "pipeserve-local", "user": user}}],
        "current-context": "pipeserve-local",
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# HTTP checks


def _ctx(verify_ca: Path | None = None, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    if verify_ca:
        ctx = ssl.create_default_context(cafile=str(verify_ca))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def http_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


class Api:
    """Minimal admin REST client for the checks (the kubernetes package is slower to import)."""

    def __init__(self, port: int, pki: Path):
        self.base = f"https://127.0.0.1:{port}"
        self.ctx = _ctx(pki / "ca.crt", (pki / "admin.crt", pki / "admin.key"))

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.base + path, self.ctx)

    def json(self, path: str) -> dict:
        code, body = self.get(path)
        if code != 200:
            raise ClusterError(f"GET {path}: HTTP {code}: {body[:300]}")
        return json.loads(body)


# --------------------------------------------------------------------------------------------
# processes


def start_process(state: dict, name: str, argv: list[str], env: dict[str, str] | None = None,
                  ports: dict[str, int] | None = None) -> int:
    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logf = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    logf.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
    logf.flush()
    full_env = dict(os.environ)
    full_env.pop("KUBECONFIG", None)
    if env:
        full_env.update(env)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            env=full_env, cwd=STATE_DIR, start_new_session=True)
    logf.close()
    state.setdefault("processes", {})[name] = {
        "pid": proc.pid,
        "start_time": pid_start_time(proc.pid),
        "argv": argv,
        "ports": ports or {},
        "log": str(logs / f"{name}.log"),
    }
    save_state(state)
    return proc.pid


def stop_processes(state: dict, timeout: float = 15.0) -> list[str]:
    """TERM every process we started (reverse start order), then KILL what is left."""
    procs = state.get("processes", {})
    order = [n for n in reversed(COMPONENTS) if n in procs] + [n for n in procs if n not in COMPONENTS]
    stopped = []
    for name in order:
        pid = owned_pid(procs[name])
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(50):
                if not pid_alive(pid):
                    break
                time.sleep(0.1)
            stopped.append(f"{name} (pid {pid}, killed)")
        else:
            stopped.append(f"{name} (pid {pid})")
    return stopped


# --------------------------------------------------------------------------------------------
# manifests from the module cache


def kubectl(args: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run([kubectl_path(), "--kubeconfig", str(KUBECONFIG), *args], input=input, check=check)


APPLY = ["apply", "--server-side", "--force-conflicts", "--field-manager=pipeserve-localcluster", "-f", "-"]


def as_list(docs: list[dict]) -> str:
    """JSON v1 List: much faster to write than YAML for the multi-megabyte KServe CRDs."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def apply_docs(docs: list[dict]) -> None:
    kubectl(APPLY, input=as_list(docs))


def read_yaml_docs(*paths: Path) -> list[dict]:
    docs: list[dict] = []
    for path in paths:
        docs += [d for d in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]
    return docs


def kustomize(path: Path) -> list[dict]:
    out = run([kubectl_path(), "kustomize", str(path)]).stdout
    return [d for d in yaml.load_all(out, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]


def kserve_configmap(kserve_dir: Path) -> dict:
    """KServe's inferenceservice-config, unchanged except the default deployment mode (Standard).

    Ingress stays at KServe's defaults (Gateway API off, class `istio`): in Standard mode the
    controller then creates a plain networking.k8s.io/v1 Ingress object (no ingress controller
    acts on it) and marks IngressReady, so an ISVC can become Ready without Istio or Gateway API."""
    (cm,) = read_yaml_docs(kserve_dir / "config" / "configmap" / "inferenceservice.yaml")
    cm["metadata"]["namespace"] = KSERVE_NAMESPACE
    deploy = json.loads(cm["data"]["deploy"])
    deploy["defaultDeploymentMode"] = "Standard"
    cm["data"]["deploy"] = json.dumps(deploy, indent=2)
    return cm


def webhook_configs(kserve_dir: Path, port: int, ca_bundle: str) -> list[dict]:
    """KServe's webhook configurations with `service:` rewritten to https://127.0.0.1:PORT/PATH."""
    docs = read_yaml_docs(kserve_dir / "config" / "webhook" / "manifests.yaml")
    for doc in docs:
        doc["metadata"].pop("creationTimestamp", None)
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            hook["timeoutSeconds"] = 10
    return docs


def nodes() -> list[dict]:
    common_status = {
        "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"},
        "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"},
    }
    gpu_status = json.loads(json.dumps(common_status))
    for k in ("capacity", "allocatable"):
        gpu_status[k]["nvidia.com/gpu"] = str(GPUS_PER_NODE)

    def node(name: str, labels: dict, taints: list, status: dict) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/role": "agent",
                    "node-role.kubernetes.io/agent": "",
                    "type": "kwok",
                    **labels,
                },
            },
            "spec": {"taints": taints},
            "status": status,
        }

    return [
        node(GPU_NODE, {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": str(GPUS_PER_NODE)},
             [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}], gpu_status),
        node(CPU_NODE, {}, [], common_status),
    ]


# --------------------------------------------------------------------------------------------
# add-ons: the S3 store (versitygw) and the KFP API double


def xattrs_supported(folder: Path) -> bool:
    """Whether ``folder``'s file system keeps user extended attributes (versitygw's default metadata store)."""
    probe = folder / ".xattr-probe"
    try:
        probe.write_bytes(b"")
        os.setxattr(probe, "user.pipeserve", b"1")
        return os.getxattr(probe, "user.pipeserve") == b"1"
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


def s3_request(method: str, endpoint: str, path: str, access_key: str, secret_key: str,
               region: str = S3_REGION, body: bytes = b"") -> tuple[int, str]:
    """One AWS Signature V4 request (path-style), enough to create and check buckets without boto3."""
    host = urlsplit(endpoint).netloc
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, quote(path), "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed,
                           payload])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(endpoint + quote(path), data=body if method in ("PUT", "POST") else None,
                                 method=method, headers={
                                     "x-amz-content-sha256": payload, "x-amz-date": amz_date,
                                     "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                                      f"SignedHeaders={signed}, Signature={signature}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def launch_addons(state: dict, taken: set[int], names: list[str]) -> dict[str, Callable[[], None]]:
    """Start the add-ons in ``names``; return, per add-on, what waits for it and finishes its set-up."""
    waits: dict[str, Callable[[], None]] = {}
    if S3 in names:
        binary = require_binaries([S3])[S3]
        port = free_port(taken)
        data = STATE_DIR / "data" / "s3"
        data.mkdir(parents=True, exist_ok=True)
        # Object metadata lives in extended attributes; where the file system has none, in a sidecar folder.
        meta = [] if xattrs_supported(data) else [f"--sidecar={STATE_DIR / 'data' / 's3-meta'}"]
        if meta:
            (STATE_DIR / "data" / "s3-meta").mkdir(parents=True, exist_ok=True)
        access_key = f"pipeserve-{secrets.token_hex(4)}"
        secret_key = secrets.token_urlsafe(24)
        endpoint = f"http://127.0.0.1:{port}"
        log(f"==> {S3} (S3, posix backend in {data}) on {endpoint}")
        # Keys through the environment, so they are not in state.json's argv.
        start_process(state, S3, [
            str(binary), f"--port=127.0.0.1:{port}", "--health=/health", f"--region={S3_REGION}",
            "posix", *meta, str(data),
        ], env={"ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key}, ports={"s3": port})
        state.setdefault("ports", {})[S3] = port

        def finish_s3() -> None:
            wait_for(f"{S3} /health", lambda: http_get(endpoint + "/health")[0] == 200, 60, proc_names=(S3,))
            for bucket in S3_BUCKETS:
                code, body = s3_request("PUT", endpoint, f"/{bucket}", access_key, secret_key)
                if code != 200 and "BucketAlreadyOwnedByYou" not in body:
                    raise ClusterError(f"creating S3 bucket {bucket!r} failed: HTTP {code}: {body[:500]}")
            code, body = s3_request("GET", endpoint, "/", access_key, secret_key)
            missing = [b for b in S3_BUCKETS if f"<Name>{b}</Name>" not in body]
            if code != 200 or missing:
                raise ClusterError(f"listing the S3 buckets failed or misses {missing}: HTTP {code}: {body[:500]}")
            S3_ENDPOINT_FILE.write_text(endpoint + "\n")
            S3_CREDENTIALS_FILE.write_text(
                "# The local cluster's S3 store (versitygw). Load with: set -a; . .cluster/s3-credentials; set +a\n"
                f"AWS_ACCESS_KEY_ID={access_key}\nAWS_SECRET_ACCESS_KEY={secret_key}\n"
                f"AWS_ENDPOINT_URL={endpoint}\nAWS_REGION={S3_REGION}\n")
            S3_CREDENTIALS_FILE.chmod(0o600)
            state["s3"] = {"endpoint": endpoint, "region": S3_REGION, "buckets": list(S3_BUCKETS),
                           "metadata": "sidecar" if meta else "xattr", "credentials_file": str(S3_CREDENTIALS_FILE)}
            save_state(state)

        waits[S3] = finish_s3
    if KFP in names:
        port = free_port(taken)
        url = f"http://127.0.0.1:{port}"
        log(f"==> {KFP} (request-validating double of the KFP API server, not the real one) on {url}")
        start_process(state, KFP, [
            sys.executable, str(CLUSTER_SRC / "kfp_api_double.py"), "--host=127.0.0.1", f"--port={port}",
            f"--state-dir={STATE_DIR / 'data' / KFP}",
        ], ports={"http": port})
        state.setdefault("ports", {})[KFP] = port

        def finish_kfp() -> None:
            wait_for(f"{KFP} /apis/v2beta1/healthz", lambda: http_get(url + "/apis/v2beta1/healthz")[0] == 200, 60,
                     proc_names=(KFP,))
            KFP_ENDPOINT_FILE.write_text(url + "\n")
            state["kfp"] = {"endpoint": url, "kind": KFP}
            save_state(state)

        waits[KFP] = finish_kfp
    return waits


def finish_addons(state: dict, waits: dict[str, Callable[[], None]]) -> None:
    for finish in waits.values():
        finish()


# --------------------------------------------------------------------------------------------
# up / down / status


def healthy(state: dict) -> tuple[bool, str]:
    """The control plane and the add-ons (S3 store, KFP double) all answer."""
    ok, why = core_healthy(state)
    if not ok:
        return ok, why
    sick = addons_unhealthy(state)
    if sick:
        return False, "; ".join(f"{n}: {w}" for n, w in sick.items())
    return True, "healthy"


def addons_unhealthy(state: dict) -> dict[str, str]:
    """The add-ons that are not running or do not answer, with why."""
    procs = state.get("processes", {})
    checks = {S3: "/health", KFP: "/apis/v2beta1/healthz"}
    sick = {}
    for name in ADDONS:
        entry = procs.get(name)
        if not entry or owned_pid(entry) is None:
            sick[name] = "not running"
            continue
        port = next(iter(entry.get("ports", {}).values()), None)
        try:
            code, _ = http_get(f"http://127.0.0.1:{port}{checks[name]}")
        except Exception as exc:  # noqa: BLE001
            sick[name] = f"health check failed: {exc}"
            continue
        if code != 200:
            sick[name] = f"{checks[name]}: HTTP {code}"
    return sick


def core_healthy(state: dict) -> tuple[bool, str]:
    procs = state.get("processes", {})
    missing = [n for n in CORE if n not in procs or owned_pid(procs[n]) is None]
    if missing:
        return False, f"not running: {', '.join(missing)}"
    try:
        api = Api(state["ports"]["apiserver"], STATE_DIR / "pki")
        code, body = api.get("/readyz")
        if code != 200:
            return False, f"API server /readyz: HTTP {code}"
        code, _ = http_get(f"http://127.0.0.1:{state['ports']['kserve-health']}/readyz")
        if code != 200:
            return False, f"KServe /readyz: HTTP {code}"
    except Exception as exc:  # noqa: BLE001
        return False, f"health check failed: {exc}"
    return True, "healthy"


def cmd_up(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    state = load_state()
    if state:
        ok, why = core_healthy(state)
        if ok:
            sick = addons_unhealthy(state)
            if not sick:
                log(f"local cluster is already up and healthy ({STATE_DIR}); nothing to do.")
                print_usage(state)
                return 0
            log(f"local cluster is up; starting {', '.join(sick)} ({'; '.join(f'{n}: {w}' for n, w in sick.items())})")
            for name in sick:
                stop_processes({"processes": {name: state["processes"][name]}} if name in state.get("processes", {})
                               else {})
                state.get("processes", {}).pop(name, None)
            taken = set(state.get("ports", {}).values())
            t0 = time.monotonic()
            waits = launch_addons(state, taken, list(sick))
            finish_addons(state, waits)
            state.setdefault("timings", {})["add-ons (started on a running cluster)"] = round(time.monotonic() - t0, 1)
            save_state(state)
            print_usage(state)
            return 0
        log(f"found a previous local cluster in {STATE_DIR} that is not healthy ({why}); stopping it first")
        cmd_down(args)

    bins = require_binaries()
    kubectl_path()
    mods = module_dirs()
    kserve_dir, keda_dir, knative_dir, kwok_dir = (mods["kserve"], mods["keda"], mods["knative-serving"], mods["kwok"])

    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
    pki = STATE_DIR / "pki"
    (STATE_DIR / "logs").mkdir(parents=True)
    state = {"versions": {"kubernetes": K8S_VERSION, "kserve": mods["kserve@version"],
                          "keda": mods["keda@version"], "knative-serving": mods["knative-serving@version"],
                          "kwok": mods["kwok@version"]},
             "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "processes": {}}
    timings: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 1)
        log(f"    {name}: {timings[name]:.1f}s")

    taken: set[int] = set()
    ports = {name: free_port(taken) for name in (
        "etcd-client", "etcd-peer", "apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
        "kserve-metrics", "kserve-health", "kserve-webhook")}
    state["ports"] = ports
    save_state(state)

    try:
        t0 = time.monotonic()
        log("==> certificates (openssl)")
        make_certs(pki)
        step("certificates", t0)
        server = f"https://127.0.0.1:{ports['apiserver']}"
        write_kubeconfig(KUBECONFIG, server, pki / "ca.crt", "pipeserve-admin",
                         cert=pki / "admin.crt", key=pki / "admin.key")
        kcfg = STATE_DIR / "kubeconfigs"
        kcfg.mkdir()
        for comp in ("kube-controller-manager", "kube-scheduler", "kwok"):
            write_kubeconfig(kcfg / f"{comp}.yaml", server, pki / "ca.crt", comp,
                             cert=pki / f"{comp}.crt", key=pki / f"{comp}.key")

        t0 = time.monotonic()
        log(f"==> etcd on 127.0.0.1:{ports['etcd-client']}")
        etcd_url = f"http://127.0.0.1:{ports['etcd-client']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        start_process(state, "etcd", [
            str(bins["etcd"]), "--name=local", f"--data-dir={STATE_DIR / 'data' / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
        ], ports={"client": ports["etcd-client"], "peer": ports["etcd-peer"]})
        wait_for("etcd /health", lambda: http_get(etcd_url + "/health")[0] == 200, 60, proc_names=("etcd",))
        step("etcd", t0)
        # The S3 store and the KFP double need nothing from Kubernetes: start them now, check them at the end.
        addon_waits = launch_addons(state, taken, ADDONS)

        t0 = time.monotonic()
        log(f"==> kube-apiserver {K8S_VERSION} on {server}")
        start_process(state, "kube-apiserver", [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",  # on top of the default set (incl. ServiceAccount)
            f"--service-account-issuer={server}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",  # the kubernetes Service cannot point at a loopback IP
            "--profiling=false",
        ], ports={"secure": ports["apiserver"]})
        api = Api(ports["apiserver"], pki)
        wait_for("kube-apiserver /readyz", lambda: api.get("/readyz")[0] == 200, 120,
                 proc_names=("etcd", "kube-apiserver"))
        step("kube-apiserver", t0)

        # The CRDs take the API server a while (the InferenceService CRD alone is ~1.5 MB of schema):
        # apply them in the background while the other components start.
        crd_files = sorted((kserve_dir / "config" / "crd" / "full").glob("serving.kserve.io_*.yaml"))
        crd_files += sorted((kserve_dir / "config" / "crd" / "full" / "clusterstoragecontainer").glob("*.yaml"))
        crd_files = [p for p in crd_files if p.name != "kustomization.yaml"]
        crd_files += sorted((keda_dir / "config" / "crd" / "bases").glob("*.yaml"))
        crd_files += sorted((knative_dir / "config" / "core" / "300-resources").glob("*.yaml"))
        crds = [d for d in read_yaml_docs(*crd_files) if d.get("kind") == "CustomResourceDefinition"]
        crd_json = STATE_DIR / "crds.json"
        crd_json.write_text(as_list(crds))
        crd_apply = subprocess.Popen([kubectl_path(), "--kubeconfig", str(KUBECONFIG), *APPLY[:-1], str(crd_json)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

        t0 = time.monotonic()
        log(f"==> kube-controller-manager (127.0.0.1:{ports['kube-controller-manager']}) and "
            f"kube-scheduler (127.0.0.1:{ports['kube-scheduler']})")
        kcm_cfg = str(kcfg / "kube-controller-manager.yaml")
        start_process(state, "kube-controller-manager", [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kcm_cfg}", f"--authentication-kubeconfig={kcm_cfg}",
            f"--authorization-kubeconfig={kcm_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kube-controller-manager']}",
            f"--cert-dir={STATE_DIR / 'data' / 'kube-controller-manager'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cluster-cidr={POD_CIDR}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            "--profiling=false",
        ], ports={"secure": ports["kube-controller-manager"]})
        sched_cfg = str(kcfg / "kube-scheduler.yaml")
        start_process(state, "kube-scheduler", [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={sched_cfg}", f"--authentication-kubeconfig={sched_cfg}",
            f"--authorization-kubeconfig={sched_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kube-scheduler']}",
            "--leader-elect=false", "--profiling=false",
        ], ports={"secure": ports["kube-scheduler"]})
        insecure = _ctx()
        for comp in ("kube-controller-manager", "kube-scheduler"):
            wait_for(f"{comp} /healthz",
                     lambda c=comp: http_get(f"https://127.0.0.1:{ports[c]}/healthz", insecure)[0] == 200,
                     60, proc_names=(comp,))
        step("kube-controller-manager + kube-scheduler", t0)

        t0 = time.monotonic()
        log(f"==> kwok (127.0.0.1:{ports['kwok']}) and nodes {GPU_NODE} ({GPUS_PER_NODE}x nvidia.com/gpu), {CPU_NODE}")
        stage_dir = kwok_dir / "kustomize" / "stage"
        stages = read_yaml_docs(
            stage_dir / "node" / "fast" / "node-initialize.yaml",
            stage_dir / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
            stage_dir / "pod" / "fast" / "pod-ready.yaml",
            stage_dir / "pod" / "fast" / "pod-complete.yaml",
            stage_dir / "pod" / "fast" / "pod-delete.yaml",
        )
        kwok_conf = STATE_DIR / "kwok.yaml"
        kwok_conf.write_text(yaml.safe_dump_all(stages, sort_keys=False))
        start_process(state, "kwok", [
            str(bins["kwok"]), f"--config={kwok_conf}", f"--kubeconfig={kcfg / 'kwok.yaml'}",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{ports['kwok']}", "--node-ip=127.0.0.1", f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ], ports={"server": ports["kwok"]})
        wait_for("kwok /healthz", lambda: http_get(f"http://127.0.0.1:{ports['kwok']}/healthz")[0] == 200, 60,
                 proc_names=("kwok",))
        apply_docs(nodes())

        def nodes_ready() -> bool:
            items = api.json("/api/v1/nodes")["items"]
            ready = {n["metadata"]["name"] for n in items
                     if any(c["type"] == "Ready" and c["status"] == "True"
                            for c in n.get("status", {}).get("conditions", []))}
            return {GPU_NODE, CPU_NODE} <= ready

        wait_for("both kwok nodes Ready", nodes_ready, 60, proc_names=("kwok",))
        step("kwok + nodes", t0)

        t0 = time.monotonic()
        log(f"==> CRDs: KServe {mods['kserve@version']}, KEDA {mods['keda@version']}, "
            f"Knative Serving {mods['knative-serving@version']} (from the Go module cache)")
        out, err = crd_apply.communicate(timeout=300)
        if crd_apply.returncode != 0:
            raise ClusterError(f"applying the CRDs failed:\n{out[-2000:]}{err[-4000:]}")
        names = [c["metadata"]["name"] for c in crds]

        def crds_established() -> bool:
            items = api.json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
            est = {c["metadata"]["name"] for c in items
                   if any(x["type"] == "Established" and x["status"] == "True"
                          for x in c.get("status", {}).get("conditions") or [])}
            return set(names) <= est

        wait_for("CRDs Established", crds_established, 60)
        state["crds"] = names
        save_state(state)
        step(f"{len(names)} CRDs", t0)

        t0 = time.monotonic()
        log(f"==> namespace {KSERVE_NAMESPACE}, inferenceservice-config (deploymentMode Standard), KServe RBAC")
        apply_docs([{"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": KSERVE_NAMESPACE,
                                  "labels": {"control-plane": "kserve-controller-manager",
                                             "controller-tools.k8s.io": "1.0"}}},
                    kserve_configmap(kserve_dir)])
        # Knative mode: KServe reads Knative's autoscaler and deployment defaults before it writes a
        # Knative Service, so the knative-serving namespace gets Knative's own ConfigMaps (no Knative
        # controller runs: the Knative Service is stored, never served).
        knative_cms = [d for d in read_yaml_docs(*(knative_dir / "config" / "core" / "configmaps" / f"{n}.yaml"
                                                  for n in ("autoscaler", "defaults", "deployment", "features")))
                       if d.get("kind") == "ConfigMap"]
        apply_docs([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "knative-serving"}}, *knative_cms])
        # KServe's own RBAC (config/rbac: ServiceAccount, ClusterRole kserve-manager-role, bindings),
        # namespaced into kserve by a throw-away kustomization around the module directory.
        kz = STATE_DIR / "kustomize" / "rbac"
        kz.mkdir(parents=True)
        (kz / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": KSERVE_NAMESPACE, "resources": [os.path.relpath(kserve_dir / "config" / "rbac", kz)]}))
        apply_docs(kustomize(kz))
        # The manager runs as that ServiceAccount, with a TokenRequest token: RBAC is real.
        token = kubectl(["create", "token", KSERVE_SA, "-n", KSERVE_NAMESPACE, "--duration=8760h"]).stdout.strip()
        write_kubeconfig(kcfg / "kserve-manager.yaml", server, pki / "ca.crt",
                         f"system:serviceaccount:{KSERVE_NAMESPACE}:{KSERVE_SA}", token=token)
        step("kserve namespace, config, RBAC", t0)

        t0 = time.monotonic()
        log(f"==> KServe controller manager {mods['kserve@version']} (webhook 127.0.0.1:{ports['kserve-webhook']}, "
            f"health 127.0.0.1:{ports['kserve-health']}, metrics 127.0.0.1:{ports['kserve-metrics']})")
        # controller-runtime reads the webhook certificate from $TMPDIR/k8s-webhook-server/serving-certs.
        tmpdir = STATE_DIR / "data" / "kserve-tmp"
        certdir = tmpdir / "k8s-webhook-server" / "serving-certs"
        certdir.mkdir(parents=True)
        shutil.copy(pki / "webhook.crt", certdir / "tls.crt")
        shutil.copy(pki / "webhook.key", certdir / "tls.key")
        start_process(state, "kserve-manager", [
            str(bins["kserve-manager"]),
            f"--metrics-addr=127.0.0.1:{ports['kserve-metrics']}",
            f"--health-probe-addr=127.0.0.1:{ports['kserve-health']}",
            f"--webhook-port={ports['kserve-webhook']}",
            "--leader-elect=false",
        ], env={"POD_NAMESPACE": KSERVE_NAMESPACE, "KUBECONFIG": str(kcfg / "kserve-manager.yaml"),
                "TMPDIR": str(tmpdir)},
           ports={"webhook": ports["kserve-webhook"], "health": ports["kserve-health"],
                  "metrics": ports["kserve-metrics"]})
        wait_for("KServe manager /readyz",
                 lambda: http_get(f"http://127.0.0.1:{ports['kserve-health']}/readyz")[0] == 200, 120,
                 proc_names=("kserve-manager",))
        apply_docs(webhook_configs(kserve_dir, ports["kserve-webhook"], b64file(pki / "webhook-ca.crt")))
        step("KServe manager + webhooks", t0)

        t0 = time.monotonic()
        log("==> ClusterServingRuntimes: KServe's (config/runtimes) and ours (manifests/runtime)")
        # Applied after the webhooks are registered, so KServe's validator checks them.
        runtimes = kustomize(kserve_dir / "config" / "runtimes") + kustomize(ROOT / "manifests" / "runtime")
        wait_for("ClusterServingRuntimes accepted by the KServe webhook", lambda: apply_docs(runtimes) is None, 60,
                 interval=1, proc_names=("kserve-manager",))
        state["runtimes"] = [r["metadata"]["name"] for r in runtimes]
        save_state(state)

        def webhook_refuses_bad_isvc() -> bool:
            bad = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                   "metadata": {"name": "webhook-probe", "namespace": "default"},
                   "spec": {"predictor": {"minReplicas": 3, "maxReplicas": 1,
                                          "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m"}}}}
            proc = kubectl(["create", "--dry-run=server", "-f", "-"], input=json.dumps(bad), check=False)
            if proc.returncode == 0:
                raise ClusterError("a server-side dry-run of an ISVC with minReplicas > maxReplicas was accepted: "
                                   "the KServe validating webhook is not active")
            return "admission webhook" in proc.stderr and "denied the request" in proc.stderr

        wait_for("KServe validating webhook to refuse a bad InferenceService", webhook_refuses_bad_isvc, 30, interval=1,
                 proc_names=("kserve-manager",))
        step("runtimes + webhook check", t0)

        t0 = time.monotonic()
        finish_addons(state, addon_waits)
        step("S3 buckets + KFP double ready", t0)
    except BaseException:
        log("local cluster did NOT come up; logs are in " + str(STATE_DIR / "logs") + "; stopping what was started")
        stop_processes(load_state() or state)
        raise

    state["up_seconds"] = round(time.monotonic() - t_start, 1)
    state["timings"] = timings
    save_state(state)
    log(f"==> local cluster up in {state['up_seconds']:.1f}s")
    print_usage(state)
    return 0


def print_usage(state: dict) -> None:
    api_server = f"https://127.0.0.1:{state['ports']['apiserver']}"
    log(f"""
  API server   {api_server}  (Kubernetes {K8S_VERSION}, KServe {state['versions']['kserve']})
  kubeconfig   {KUBECONFIG}
  S3           {state.get('s3', {}).get('endpoint', '-')}  (versitygw; keys: {S3_CREDENTIALS_FILE})
  KFP API      {state.get('kfp', {}).get('endpoint', '-')}  ({KFP}: validates, runs nothing)
  logs         {STATE_DIR / 'logs'}

  export KUBECONFIG={KUBECONFIG}
  kubectl get nodes        # ({ROOT / '.tools' / 'bin'} has the pinned kubectl)
  make cluster-down        # or: {sys.executable} {Path(__file__)} down""")


def cmd_down(args: argparse.Namespace) -> int:
    state = load_state()
    if not state and not STATE_DIR.exists():
        log(f"no local cluster state in {STATE_DIR}; nothing to stop")
        return 0
    stopped = stop_processes(state)
    log("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    ports = [p for p in state.get("ports", {}).values()]
    still = [p for p in ports if port_open(p)]
    if still:
        # Give sockets a moment (e.g. TIME_WAIT does not accept, so this is about listeners only).
        time.sleep(1)
        still = [p for p in ports if port_open(p)]
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    if still:
        log(f"warning: something still listens on 127.0.0.1 port(s) {still}")
        return 1
    log(f"removed {STATE_DIR}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        log(f"local cluster: down (no {STATE_FILE})")
        return 0
    ok, why = healthy(state)
    log(f"local cluster: {'up' if ok else 'NOT healthy'} ({why}); state in {STATE_DIR}")
    for k, v in state.get("versions", {}).items():
        log(f"  {k:<16} {v}")
    log(f"  {'component':<24} {'pid':>8} {'RSS MiB':>8}  ports")
    total = 0.0
    for name in COMPONENTS:
        entry = state.get("processes", {}).get(name)
        if not entry:
            log(f"  {name:<24} {'-':>8} {'-':>8}  (not started)")
            continue
        pid = owned_pid(entry)
        rss = rss_mib(pid) if pid else None
        total += rss or 0
        ports = ", ".join(f"{k} 127.0.0.1:{v}" for k, v in entry.get("ports", {}).items())
        log(f"  {name:<24} {pid if pid else 'dead':>8} {f'{rss:.0f}' if rss else '-':>8}  {ports}")
    log(f"  {'total':<24} {'':>8} {total:>8.0f}")
    if state.get("s3"):
        log(f"  S3 (versitygw)   {state['s3']['endpoint']}  buckets {', '.join(state['s3']['buckets'])}; "
            f"keys in {state['s3']['credentials_file']}")
    if state.get("kfp"):
        log(f"  KFP API          {state['kfp']['endpoint']}  ({KFP}: validates requests, compiles and runs nothing)")
    if state.get("up_seconds"):
        log(f"  started in {state['up_seconds']}s at {state.get('started_at')}")
    if args.json:
        out = {"healthy": ok, "reason": why, "state_dir": str(STATE_DIR), "kubeconfig": str(KUBECONFIG),
               "versions": state.get("versions"), "ports": state.get("ports"),
               "processes": {n: {"pid": owned_pid(e), "rss_mib": rss_mib(owned_pid(e)) if owned_pid(e) else None,
                                 "ports": e.get("ports")} for n, e in state.get("processes", {}).items()}}
        print(json.dumps(out, indent=2))
    return 0 if ok else 1


def cmd_env(args: argparse.Namespace) -> int:
    if not KUBECONFIG.exists():
        log(f"# local cluster is down (no {KUBECONFIG}); run: make cluster-up")
        return 1
    print(f"export KUBECONFIG={KUBECONFIG}")
    print(f"export PATH={ROOT / '.tools' / 'bin'}:$PATH")
    if KFP_ENDPOINT_FILE.exists():
        print(f"# KFP API ({KFP}): {KFP_ENDPOINT_FILE.read_text().strip()}")
    if getattr(args, "s3", False):
        if not S3_CREDENTIALS_FILE.exists():
            log(f"# no {S3_CREDENTIALS_FILE}: the S3 store is not up (run: make cluster-up)")
            return 1
        for line in S3_CREDENTIALS_FILE.read_text().splitlines():
            if line and not line.startswith("#"):
                print(f"export {line}")
    return 0


@contextlib.contextmanager
def cluster_lock():
    """Serialise up/down (e.g. two test sessions starting the cluster at once)."""
    lock_path = ROOT / ".tools" / "cluster" / "localcluster.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another localcluster.py up/down to finish ({lock_path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the local cluster (idempotent)")
    sub.add_parser("down", help="stop it and remove its state")
    st = sub.add_parser("status", help="what runs, ports, memory")
    st.add_argument("--json", action="store_true", help="also print a JSON summary")
    env = sub.add_parser("env", help="print shell exports for kubectl")
    env.add_argument("--s3", action="store_true", help="also export the S3 store's AWS_* variables")
    args = parser.parse_args(argv)
    try:
        if args.cmd in ("up", "down"):
            with cluster_lock():
                return {"up": cmd_up, "down": cmd_down}[args.cmd](args)
        return {"status": cmd_status, "env": cmd_env}[args.cmd](args)
    except ClusterError as err:
        print(f"localcluster: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
