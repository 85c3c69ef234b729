"""pipeserve.smoke (the smoke inference `make run` ends with) and pipeserve.localserver (the server it starts)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from pipeserve.localserver import LocalServer, LocalServerError, free_port, free_ports
from pipeserve.smoke import SmokeTestFailed, smoke_inference, smoke_request


def test_smoke_inference_serves_answers_and_stops(iris_fit, iris_repo):
    X = iris_fit.split.X_test[:3]
    result = smoke_inference(iris_repo, "iris", X)
    assert result.rows == 3 and result.model == "iris"
    np.testing.assert_array_equal(result.outputs["label"], iris_fit.model.predict(X))
    np.testing.assert_allclose(result.outputs["probabilities"], iris_fit.model.predict_proba(X), atol=1e-4)


def test_smoke_inference_reports_a_server_that_refuses_to_start(iris_fit, iris_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(iris_repo, repo)
    with (repo / "iris" / "1" / "model.onnx").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(SmokeTestFailed, match=r"exited with code 1: .*does not match its model card"):
        smoke_inference(repo, "iris", iris_fit.split.X_test[:1])


def test_free_ports_are_distinct_and_never_8080():
    ports = free_ports(20)
    assert len(set(ports)) == 20 and 8080 not in ports


def test_local_server_reads_the_bound_ports_and_stops_with_sigterm(iris_fit, iris_repo, tmp_path):
    log = tmp_path / "server.log"
    with LocalServer.serve(iris_repo, grpc=True, log_path=log) as server:
        assert server.url == f"http://127.0.0.1:{server.http_port}" and server.http_port > 0
        assert server.grpc_url == f"127.0.0.1:{server.grpc_port}" and server.grpc_port not in (None, server.http_port)
        assert server.ready_line.startswith("pipeserve serve: ready in") and "workers: 1" in server.ready_line
        assert server.startup_s is not None and server.startup_s > 0
        outputs = smoke_request(server.url, "iris", iris_fit.split.X_test[:2])
    assert server.proc is not None and server.proc.returncode == 0  # SIGTERM: graceful, exit 0
    assert outputs["label"] == iris_fit.model.predict(iris_fit.split.X_test[:2]).tolist()
    assert "ready in" in server.log() and log.exists()  # a log_path given is kept


def test_local_server_removes_its_temporary_log_but_keeps_the_text(iris_repo):
    server = LocalServer.serve(iris_repo).start()
    assert server.stop() == 0
    assert not server.log_path.exists() and "ready in" in server.log()


def test_local_server_that_exits_raises_with_the_log_tail(tmp_path):
    with pytest.raises(LocalServerError, match=r"`pipeserve serve .*` exited with code 2: .*No model found"):
        LocalServer.serve(tmp_path).start()


def test_local_server_not_ready_in_time_is_stopped(tmp_path):
    sleeper = LocalServer([sys.executable, "-c", "import time; print('starting', flush=True); time.sleep(60)"],
                          timeout=0.5, log_path=tmp_path / "sleep.log")
    with pytest.raises(LocalServerError, match=r"was not ready within 0.5 s; its log ends with:\nstarting"):
        sleeper.start()
    assert sleeper.proc is not None and sleeper.proc.returncode is not None  # stopped, not left running


def test_local_server_for_another_command_waits_for_its_ready_url(tmp_path):
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with LocalServer.command(argv, f"http://127.0.0.1:{port}/") as server:
        assert server.url == f"http://127.0.0.1:{port}" and server.grpc_url is None
        assert server.shown.startswith("python")


def test_smoke_request_failures_say_where_and_why(iris_repo):
    with pytest.raises(SmokeTestFailed, match=r"v2/models/iris/infer failed: Cannot reach the v2 server"):
        smoke_request(f"http://127.0.0.1:{free_port()}", "iris", np.zeros((1, 4), np.float32), timeout=5)
    with LocalServer.serve(iris_repo) as server, pytest.raises(SmokeTestFailed, match="served models: iris"):
        smoke_request(server.url, "nope", np.zeros((1, 4), np.float32))
