"""Helpers for the server tests: the real `pipeserve serve` CLI on free loopback ports."""

from __future__ import annotations

import http.client
from pathlib import Path

from pipeserve.localserver import LocalServer


def start_server(model_dir: Path, tmp_path: Path, *extra: str, grpc: bool = True, timeout: float = 60) -> LocalServer:
    """Start `pipeserve serve MODEL_DIR EXTRA...` on any free port(s) and wait for its ready line."""
    server = LocalServer.serve(model_dir, *extra, grpc=grpc, timeout=timeout,
                               log_path=tmp_path / f"server-{len(list(tmp_path.glob('server-*.log')))}.log")
    return server.start()


def connection(server: LocalServer) -> http.client.HTTPConnection:
    """A keep-alive HTTP connection to ``server``."""
    return http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
