"""The v2 inference server: HTTP/gRPC -> data plane -> model backends."""
