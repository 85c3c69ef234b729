"""Helpers for the server tests: the real `pipeserve serve` CLI on free loopback ports, and the same
data plane and ASGI app in this process (``httpx.ASGITransport``), where coverage and a debugger see them."""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path

import httpx

from pipeserve.localserver import LocalServer
from pipeserve.serving.dataplane import DataPlane, ServedModel, load_model
from pipeserve.serving.metrics import Metrics
from pipeserve.serving.rest import RestApp


def start_server(model_dir: Path, tmp_path: Path, *extra: str, grpc: bool = True, timeout: float = 60) -> LocalServer:
    """Start `pipeserve serve MODEL_DIR EXTRA...` on any free port(s) and wait for its ready line."""
    log_path = tmp_path / f"server-{len(list(tmp_path.glob('server-*.log')))}.log"
    return LocalServer.serve(model_dir, *extra, grpc=grpc, timeout=timeout, log_path=log_path).start()


def connection(server: LocalServer) -> http.client.HTTPConnection:
    """A keep-alive HTTP connection to ``server``."""
    return http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)


def load(model_dir: Path, backend: str = "onnx") -> ServedModel:
    """A verified, loaded model, as a worker loads it (one native thread)."""
    return load_model(model_dir, None, backend, lambda _backend: 1)


class AsgiClient:
    """Requests to a :class:`RestApp` in this process, one event loop per request.

    Args:
        models: The loaded models.
        max_request_bytes: As ``--max-request-bytes``.
        inline_rows: As the data plane's: batches above it run on a thread.
    """

    def __init__(self, models: list[ServedModel], max_request_bytes: int = 64 * 1024 * 1024,
                 inline_rows: int = 4096) -> None:
        self.metrics = Metrics()
        self.dataplane = DataPlane(models, inline_rows, self.metrics)
        self.app = RestApp(self.dataplane, self.metrics, max_request_bytes)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://pipeserve.test") as client:
                return await client.request(method, path, content=body, headers=headers)

        return asyncio.run(send())
