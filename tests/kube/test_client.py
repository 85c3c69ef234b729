"""The client module's smoke inference against the real pipeserve runtime, started with the exact
arguments KServe passes (manifests/runtime), proving the builder's v2 model path is the served one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeserve.kube import DeploymentSpec, build_inference_service
from pipeserve.localserver import free_port
from pipeserve.modelcard import read_card
from pipeserve.smoke import SmokeTestFailed, smoke_infer


@pytest.fixture(scope="module")
def runtime(iris_repo, tmp_path_factory):
    """`pipeserve serve` as the pipeserve-runtime container runs it, for an ISVC named iris-prod."""
    port = free_port()
    log = tmp_path_factory.mktemp("runtime") / "server.log"
    # KServe mounts the repository at /mnt/models and passes these args (see manifests/runtime);
    # --host keeps the test on loopback.
    argv = [sys.executable, "-m", "pipeserve.cli.main", "serve", "--model_name=iris-prod",
            f"--model_dir={iris_repo}", f"--http_port={port}", "--grpc_port=0", "--host", "127.0.0.1"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while "ready in" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"runtime did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_smoke_inference_uses_the_model_name_the_builder_advertises(runtime, iris_repo):
    card = read_card(iris_repo / "iris")
    isvc = build_inference_service(card, "s3://m/", DeploymentSpec(target="pipeserve", name="iris-prod"))
    model = isvc["metadata"]["annotations"]["pipeserve.dev/v2-model-path"].rsplit("/", 1)[-1]
    assert model == "iris-prod"
    outputs = smoke_infer(runtime, model, card.n_features)
    assert set(outputs) == {"label", "probabilities"}
    assert len(outputs["label"]) == 1 and outputs["label"][0] in card.output("probabilities").labels
    assert abs(sum(outputs["probabilities"][0]) - 1) < 1e-5


def test_smoke_inference_failures_are_one_line_exit_1_errors(runtime):
    with pytest.raises(SmokeTestFailed, match=r"v2/models/iris/infer failed: .*served models: iris-prod") as info:
        smoke_infer(runtime, "iris", 4)
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    with pytest.raises(SmokeTestFailed, match="failed: Cannot reach the v2 server"):
        smoke_infer(f"http://127.0.0.1:{free_port()}", "iris-prod", 4, timeout_s=5)
