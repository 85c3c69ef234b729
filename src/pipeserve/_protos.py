"""Let kserve and tritonclient's gRPC code share one process.

Both packages ship generated code for the Open Inference Protocol that registers the same
``inference.*`` messages in protobuf's default descriptor pool, from differently named .proto files,
so whichever is imported second fails with "duplicate symbol 'inference.ServerLiveRequest'".
Triton's ``grpc_service.proto`` is a superset of KServe's ``grpc_predict_v2.proto`` with the same
message and field names, so kserve's module name can point at tritonclient's: one set of classes,
used by both. Call this before kserve is first imported.
"""

from __future__ import annotations

import sys

_KSERVE_PB2 = "kserve.protocol.grpc.grpc_predict_v2_pb2"


def share_inference_protos() -> None:
    """Alias kserve's generated OIP module to tritonclient's (no-op without tritonclient)."""
    if _KSERVE_PB2 in sys.modules:
        return
    try:
        from tritonclient.grpc import service_pb2
    except ImportError:  # tritonclient not installed: nothing can clash
        return
    sys.modules[_KSERVE_PB2] = service_pb2
