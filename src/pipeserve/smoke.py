"""Smoke inference: one request to a model on a v2 server, and `make run`'s local variant of it.

:func:`smoke_request` sends rows to any v2 server (a local one, or an InferenceService on a
cluster); :func:`smoke_inference` starts `pipeserve serve` on a free loopback port
(:class:`~pipeserve.localserver.LocalServer`), sends the rows and stops the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeserve.errors import PipeserveError

__all__ = ["SmokeResult", "SmokeTestFailed", "smoke_inference", "smoke_infer", "smoke_request"]


class SmokeTestFailed(PipeserveError):
    """The server did not start, or did not answer the smoke request."""


@dataclass(frozen=True)
class SmokeResult:
    """What :func:`smoke_inference` did: where, which model, how many rows, what came back, how long."""

    url: str
    model: str
    rows: int
    outputs: dict[str, Any]
    seconds: float


def smoke_request(url: str, model: str, rows: Any, timeout: float = 30.0) -> dict[str, list[Any]]:
    """Send ``rows`` to ``model`` on the v2 server at ``url`` (REST); return each output as lists.

    Uses :class:`pipeserve.client.Predictor`, so it speaks to Triton, KServe's servers and the
    pipeserve runtime alike.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:8080`` or an InferenceService's ``status.url``.
        model: The v2 model name.
        rows: A batch of feature rows (``[n_rows, n_features]``).
        timeout: Seconds to wait for the server's answers.

    Raises:
        SmokeTestFailed: The server is unreachable or refused or failed the request (the
            message carries the client's error).
    """
    from pipeserve.client import Predictor

    try:
        with Predictor(url, model=model, timeout=timeout) as predictor:
            outputs = predictor.infer(rows)
    except PipeserveError as exc:
        raise SmokeTestFailed(f"Smoke inference on {url}/v2/models/{model}/infer failed: {exc}") from exc
    return {name: np.asarray(values).tolist() for name, values in outputs.items()}


def smoke_inference(repository: Path, model: str, rows: np.ndarray, timeout: float = 30.0) -> SmokeResult:
    """Serve ``repository`` in a child process, send ``rows`` to ``model`` over REST v2, stop the server.

    Raises:
        SmokeTestFailed: The server exited, was not ready within ``timeout`` or the request failed.
    """
    from pipeserve.localserver import LocalServer, LocalServerError

    t0 = time.perf_counter()
    server = LocalServer.serve(repository, "--log-level", "warning", timeout=timeout)
    try:
        with server:
            outputs = smoke_request(server.url, model, rows, timeout=5.0)
    except LocalServerError as exc:
        raise SmokeTestFailed(str(exc)) from exc
    return SmokeResult(server.url, model, len(rows), outputs, time.perf_counter() - t0)


def smoke_infer(base_url: str, model_name: str, n_features: int, timeout_s: float = 30) -> dict[str, list[Any]]:
    """Send one all-zeros FP32 row to ``/v2/models/<model_name>/infer`` at ``base_url``; return the outputs.

    What `pipeserve deploy`, the rollouts and the pipeline's deploy step send to a served model.

    Raises:
        SmokeTestFailed: the endpoint is unreachable or the inference failed (exit 1).
    """
    return smoke_request(base_url, model_name, np.zeros((1, n_features), np.float32), timeout_s)
