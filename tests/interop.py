"""Interop peers for the tests: kserve's clients and ``ModelServer`` next to tritonclient's gRPC code.

Both packages ship generated code for the Open Inference Protocol that registers the same
``inference.*`` messages in protobuf's default descriptor pool, from differently named .proto files,
so whichever is imported second fails with "duplicate symbol 'inference.ServerLiveRequest'".
Triton's ``grpc_service.proto`` is a superset of KServe's ``grpc_predict_v2.proto`` with the same
message and field names, so kserve's module name can point at tritonclient's: one set of classes,
used by both. pipeserve itself never imports kserve; only the tests mix the two (tests/conftest.py
calls :func:`share_inference_protos` before any test imports kserve).

:func:`kserve_server` starts KServe 0.21's ``ModelServer`` (benchmarks/apps/kserve_app.py, run as a
script) on free loopback ports, the peer the client and predict tests check pipeserve against.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeserve.localserver import LocalServer, free_ports

_KSERVE_PB2 = "kserve.protocol.grpc.grpc_predict_v2_pb2"
KSERVE_APP = Path(__file__).resolve().parents[1] / "benchmarks" / "apps" / "kserve_app.py"


def share_inference_protos() -> None:
    """Alias kserve's generated OIP module to tritonclient's (call it before kserve is imported)."""
    if _KSERVE_PB2 not in sys.modules:
        from tritonclient.grpc import service_pb2

        sys.modules[_KSERVE_PB2] = service_pb2


def kserve_server(repo: Path, log_path: Path | None = None, timeout: float = 90.0) -> LocalServer:
    """KServe's ModelServer serving every model of ``repo`` with a plain sklearn ``kserve.Model`` (and a
    ``<name>-nometa`` variant without a signature); not started (use it as a context manager).

    ``url`` is its REST address, ``grpc_url`` its gRPC address.
    """
    http_port, grpc_port = free_ports(2)  # KServe takes its ports on the command line only
    argv = [sys.executable, str(KSERVE_APP), str(repo), "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    server = LocalServer.command(argv, f"http://127.0.0.1:{http_port}/v2/health/ready", log_path=log_path,
                                 timeout=timeout)
    server.grpc_url = f"127.0.0.1:{grpc_port}"
    return server
