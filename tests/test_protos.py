"""kserve and tritonclient's gRPC modules in one process (see tests/interop.py), and a library that needs neither."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import sys
{prelude}
import tritonclient.grpc
import kserve
from kserve import InferInput, InferRequest
import numpy as np
inp = InferInput("input", [1, 4], "FP32")
inp.set_data_from_numpy(np.zeros((1, 4), np.float32))
msg = InferRequest(model_name="iris", infer_inputs=[inp]).to_grpc()
assert isinstance(msg, tritonclient.grpc.service_pb2.ModelInferRequest)
print("ok")
"""


@pytest.mark.parametrize(("prelude", "works"), [
    (f"sys.path.insert(0, {str(TESTS)!r}); from interop import share_inference_protos; share_inference_protos()", True),
    ("", False),
])
def test_kserve_and_tritonclient_grpc_coexist_only_with_the_alias(prelude, works):
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(prelude=prelude)], capture_output=True, text=True)
    assert (result.returncode == 0) is works, result.stderr[-500:]
    if not works:
        assert "duplicate symbol 'inference." in result.stderr


def test_the_client_and_server_import_no_kserve():
    # pipeserve speaks the protocol through tritonclient only; mixing in kserve is the caller's choice.
    code = ("import sys, pipeserve.client, pipeserve.transports, pipeserve.serving.grpc_server, tritonclient.grpc; "
            "sys.exit('kserve' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
