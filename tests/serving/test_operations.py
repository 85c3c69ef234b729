"""Operations: start-up refusals, KServe runtime arguments, backends, load, SIGTERM, workers."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_command, run_cli, spawn_cli
from serving_support import connection, start_server

from pipeserve.localserver import LocalServer
from pipeserve.modelcard import hash_files, read_card, write_card

ROW_BODY = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [6.8, 2.8, 4.8, 1.4]}]}
).encode()
JSON_CT = {"Content-Type": "application/json"}


def _copy_repo(repo: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(repo, dst)
    return dst


def _get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# --- refusals at start-up -----------------------------------------------------------------------


def test_sha256_mismatch_refuses_to_start(iris_repo: Path, tmp_path: Path) -> None:
    repo = _copy_repo(iris_repo, tmp_path)
    with (repo / "iris" / "1" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    proc = spawn_cli("serve", str(repo), "--http-port", "0", timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pipeserve serve: error: Model directory")
    assert "1/model.onnx: sha256" in lines[0] and "does not match its model card" in lines[0]
    assert "ready" not in proc.stdout


def test_unlisted_file_refuses_to_start(iris_repo: Path, tmp_path: Path) -> None:
    repo = _copy_repo(iris_repo, tmp_path)
    (repo / "iris" / "1" / "extra.py").write_text("print('hi')\n")
    proc = spawn_cli("serve", str(repo), "--http-port", "0", timeout=60)
    assert proc.returncode == 1
    assert "1/extra.py: not listed in the model card" in proc.stderr


def test_skops_untrusted_type_refused(iris_repo: Path, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    repo = _copy_repo(iris_repo, tmp_path)
    model_dir = repo / "iris"
    sio.dump(FunctionTransformer(func=print), model_dir / "1" / "model.skops")
    card = read_card(model_dir)
    write_card(model_dir, type(card).from_dict({**card.to_dict(), "files": hash_files(model_dir)}))
    proc = spawn_cli("serve", str(repo), "--backend", "sklearn", "--http-port", "0", timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "builtins.print" in lines[0] and "does not trust" in lines[0]


def test_port_in_use_is_one_line(iris_repo: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn_cli("serve", str(iris_repo), "--http-port", str(port), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"pipeserve serve: error: Cannot listen on 127.0.0.1:{port} for HTTP")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1; got 0"),
        (["--http-port", "70000"], "--http-port must be between 1 and 65535"),
        (["--max-request-bytes", "10"], "--max-request-bytes must be at least 1024"),
        (["--http-port", "9001", "--http_port", "9002"], "disagree"),
    ],
)
def test_bad_options_exit_2(iris_repo: Path, args: list[str], message: str) -> None:
    # Refused while the settings are built, before anything is loaded or bound: safe in-process.
    result = run_cli("serve", str(iris_repo), *args)
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_missing_model_dir_exit_2(tmp_path: Path) -> None:
    result = run_cli("serve", str(tmp_path), "--http-port", "0")
    assert result.code == 2
    assert "No model found" in result.err


def test_kserve_runtime_args_default_to_all_interfaces(tmp_path: Path) -> None:
    from pipeserve.cli.main import build_parser
    from pipeserve.cli.serve import build_settings

    args = build_parser().parse_args(
        ["serve", "--model_name=flowers", "--model_dir=/mnt/models", "--http_port=8080", "--grpc_port=8081"]
    )
    settings = build_settings(args)
    assert (settings.host, settings.http_port, settings.grpc_port) == ("0.0.0.0", 8080, 8081)
    assert settings.model_name == "flowers" and settings.model_dir == Path("/mnt/models")
    local = build_settings(build_parser().parse_args(["serve", "build/model"]))
    assert (local.host, local.http_port, local.grpc_port) == ("127.0.0.1", 8080, None)


def test_kserve_runtime_args_serve_under_the_isvc_name(iris_repo: Path, tmp_path: Path) -> None:
    argv = cli_command("serve", "--model_name=flowers", f"--model_dir={iris_repo}", "--http_port=0",
                       "--grpc_port=auto", "--host", "127.0.0.1")
    server = LocalServer(argv, log_path=tmp_path / "kserve.log").start()
    try:
        assert server.grpc_port is not None
        http_port = server.http_port
        assert _get(http_port, "/v2/models/flowers")[1]["name"] == "flowers"
        assert _get(http_port, "/v2/models/iris")[0] == 404
        assert _get(http_port, "/v2/models/flowers/ready") == (200, {"name": "flowers", "ready": True})
    finally:
        assert server.stop() == 0, server.log()


# --- backends -----------------------------------------------------------------------------------


def test_sklearn_backend_parity(iris_repo: Path, iris_split, tmp_path: Path) -> None:
    import tritonclient.http as thttp

    from pipeserve.packaging import load_estimator

    X = np.asarray(iris_split[0], dtype=np.float32)
    est = load_estimator(iris_repo / "iris" / "1" / "model.skops")
    server = start_server(iris_repo, tmp_path, "--backend", "sklearn", grpc=False)
    try:
        client = thttp.InferenceServerClient(url=server.address)
        assert client.get_model_metadata("iris")["platform"] == "sklearn_skops"
        inp = thttp.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=True)
        result = client.infer("iris", [inp])
        np.testing.assert_array_equal(result.as_numpy("label"), est.predict(X))
        np.testing.assert_allclose(result.as_numpy("probabilities"), est.predict_proba(X), atol=1e-5)
    finally:
        assert server.stop() == 0


def test_data_plane_imports_no_web_framework() -> None:
    code = (
        "import sys; import pipeserve.serving.dataplane, pipeserve.serving.tensors, pipeserve.serving.backends; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'uvicorn', 'starlette', 'fastapi', 'httptools', 'grpc', 'google', 'tritonclient', 'kserve', 'flask', "
        "'aiohttp'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- load, shutdown, workers --------------------------------------------------------------------


def _hammer(port: int, requests: int, results: list, stop: threading.Event | None = None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(requests):
            if stop is not None and stop.is_set():
                break
            try:
                conn.request("POST", "/v2/models/iris/infer", body=ROW_BODY, headers=JSON_CT)
                resp = conn.getresponse()
                body = resp.read()
                results.append(resp.status if resp.status != 200 or b'"data":[1]' in body else -1)
            except Exception as exc:  # recorded, asserted by the caller
                results.append(repr(exc))
    finally:
        conn.close()


@pytest.mark.slow
def test_load_c64_no_errors(iris_server) -> None:
    results: list = []
    threads = [threading.Thread(target=_hammer, args=(iris_server.http_port, 40, results)) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 64 * 40
    assert set(results) == {200}, {r for r in results if r != 200}


@pytest.mark.slow
def test_sigterm_under_load_loses_no_request(iris_repo: Path, tmp_path: Path) -> None:
    server = start_server(iris_repo, tmp_path, "--drain-seconds", "1", grpc=False)
    stop = threading.Event()
    results: list = []
    readiness: list[int] = []

    def watch_readiness() -> None:
        # What a load balancer does: stop routing here once readiness goes false.
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        while not stop.is_set():
            conn.request("GET", "/v2/health/ready")
            resp = conn.getresponse()
            resp.read()
            readiness.append(resp.status)
            if resp.status != 200:
                stop.set()
            time.sleep(0.01)
        conn.close()

    clients = [threading.Thread(target=_hammer, args=(server.http_port, 10**6, results, stop)) for _ in range(16)]
    watcher = threading.Thread(target=watch_readiness)
    for t in [*clients, watcher]:
        t.start()
    time.sleep(1.0)
    sent_before_term = len(results)
    code = server.stop(timeout=30)
    for t in [*clients, watcher]:
        t.join(30)
    assert code == 0, server.log()
    assert sent_before_term > 0 and len(results) > sent_before_term
    assert set(results) == {200}, {r for r in results if r != 200}
    assert readiness[-1] == 503


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(iris_repo: Path, tmp_path: Path) -> None:
    server = start_server(iris_repo, tmp_path, grpc=False)
    rows = 1_000_000
    x = np.tile(np.array([[6.8, 2.8, 4.8, 1.4]], dtype=np.float32), (rows, 1))
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    body = header + x.tobytes()
    statuses: list = []
    done_at: list[float] = []
    sent = threading.Semaphore(0)

    def big_request() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        try:
            conn.request("POST", "/v2/models/iris/infer", body=body,
                         headers={"Inference-Header-Content-Length": str(len(header))})
            sent.release()
            resp = conn.getresponse()
            out = json.loads(resp.read())
            done_at.append(time.monotonic())
            statuses.append((resp.status, out["outputs"][0]["shape"]))
        except Exception as exc:
            sent.release()
            statuses.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=big_request) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in threads:  # every body is on the wire (no fixed sleep: the machine may be slow)
        assert sent.acquire(timeout=60)
    term_at = time.monotonic()
    code = server.stop(timeout=60)
    for t in threads:
        t.join(60)
    assert code == 0, server.log()
    assert statuses == [(200, [rows])] * 4, statuses
    assert max(done_at) > term_at, "no request was in flight at SIGTERM: the test proved nothing"


@pytest.mark.slow
def test_two_workers_share_the_port(iris_repo: Path, tmp_path: Path) -> None:
    server = start_server(iris_repo, tmp_path, "--workers", "2")
    try:
        assert "workers: 2" in server.ready_line
        children = [
            p for p in Path("/proc").iterdir()
            if p.name.isdigit() and _ppid(p) == server.proc.pid
        ]
        assert len(children) == 2
        results: list = []
        threads = [threading.Thread(target=_hammer, args=(server.http_port, 25, results)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(results) == {200} and len(results) == 200
        import tritonclient.grpc as tgrpc

        assert tgrpc.InferenceServerClient(url=server.grpc_url).is_model_ready("iris")
        status, _ = _get(server.http_port, "/v2/health/ready")
        assert status == 200
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        # Multiprocess mode: any worker reports the requests of both.
        line = next(ln for ln in text.splitlines()
                    if ln.startswith('pipeserve_requests_total{model="iris",route="infer",status="200"}'))
        assert float(line.split()[-1]) == 200.0
    finally:
        assert server.stop() == 0, server.log()


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.slow
def test_a_dying_worker_takes_the_server_down(iris_repo: Path, tmp_path: Path) -> None:
    import os
    import signal

    server = start_server(iris_repo, tmp_path, "--workers", "2", grpc=False)
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == server.proc.pid]
    assert len(children) == 2
    os.kill(children[0], signal.SIGKILL)
    assert server.proc.wait(30) == 1
    assert "exited with code -9; stopping the others" in server.log()


def test_grpc_message_limit_is_resource_exhausted(iris_repo: Path, tmp_path: Path) -> None:
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    server = start_server(iris_repo, tmp_path, "--max-request-bytes", "65536")
    try:
        client = tgrpc.InferenceServerClient(url=server.grpc_url)
        x = np.ones((10_000, 4), dtype=np.float32)
        inp = tgrpc.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as info:
            client.infer("iris", [inp])
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert client.is_server_ready()
    finally:
        assert server.stop() == 0


def test_access_log_is_off_by_default_and_one_line_when_on(iris_repo: Path, tmp_path: Path) -> None:
    for flag, expected in (((), 0), (("--access-log",), 3)):
        server = start_server(iris_repo, tmp_path, *flag, grpc=False)
        try:
            for _ in range(3):
                _get(server.http_port, "/v2/health/live")
        finally:
            assert server.stop() == 0
        lines = [ln for ln in server.log().splitlines() if "/v2/health/live" in ln]
        assert len(lines) == expected, server.log()
        if expected:
            assert '"GET /v2/health/live" 200' in lines[0]


def test_head_on_health(iris_server) -> None:
    conn = connection(iris_server)
    conn.request("HEAD", "/v2/health/ready")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""
    conn.request("GET", "/v2/health/live")
    assert json.loads(conn.getresponse().read()) == {"live": True}
    conn.close()
