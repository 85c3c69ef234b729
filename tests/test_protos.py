"""kserve and tritonclient's gRPC modules in one process (see pipeserve._protos)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
    ("from pipeserve._protos import share_inference_protos; share_inference_protos()", True),
    # the library does it itself: the manifest validator imports kserve first
    ("from pipeserve.kube.schema import validate; validate({'apiVersion': 'serving.kserve.io/v1beta1', "
     "'kind': 'InferenceService', 'metadata': {'name': 'x'}, 'spec': {'predictor': {}}})", True),
    ("", False),
])
def test_kserve_and_tritonclient_grpc_coexist_only_with_the_alias(prelude, works):
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(prelude=prelude)], capture_output=True, text=True)
    assert (result.returncode == 0) is works, result.stderr[-500:]
    if not works:
        assert "duplicate symbol 'inference." in result.stderr
