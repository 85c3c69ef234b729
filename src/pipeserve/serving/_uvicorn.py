"""uvicorn, as a worker of `pipeserve serve` runs it: drain on SIGTERM, exit 0, gRPC stopped alongside.

Imported by :func:`pipeserve.serving.server.run_worker` only, so the parent process of
``--workers N`` (which imports :mod:`~pipeserve.serving.server`) never imports uvicorn.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from pipeserve.serving.dataplane import DataPlane
    from pipeserve.serving.rest import RestApp
    from pipeserve.serving.settings import ServeSettings


def build_server(app: RestApp, dataplane: DataPlane, settings: ServeSettings) -> DrainingServer:
    """The uvicorn server for ``app``: httptools, no lifespan, no access log or default headers."""
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_keep_alive=65,  # longer than typical load balancer idle timeouts
        timeout_graceful_shutdown=settings.grace_period,
    )
    return DrainingServer(config, dataplane, settings.drain_seconds)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with drain-then-close on SIGTERM, exit code 0, and gRPC stopped alongside.

    The first SIGTERM (or SIGINT) turns readiness false and, after ``drain_seconds``, closes the
    listener; in-flight requests get uvicorn's graceful shutdown. A second signal stops at once
    (SIGINT: without waiting for in-flight requests).

    Args:
        config: uvicorn's configuration.
        dataplane: Whose readiness goes false on the first signal.
        drain_seconds: Seconds to keep serving with readiness false before closing the listener.
    """

    def __init__(self, config: uvicorn.Config, dataplane: DataPlane, drain_seconds: float) -> None:
        super().__init__(config)
        self.dataplane = dataplane
        self.drain_seconds = drain_seconds
        self.grpc: Any = None  # a grpc.aio server to stop with this one (set by run_worker)
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Not recorded in _captured_signals: uvicorn would re-raise it after shutdown and the
        # process would die of the signal instead of exiting 0.
        if self.dataplane.shutting_down:
            self.should_exit = True
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        self.dataplane.begin_shutdown()
        if self.drain_seconds > 0:
            self._exit_at = time.monotonic() + self.drain_seconds
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: Any = None) -> None:
        stopping = None
        if self.grpc is not None:
            stopping = asyncio.ensure_future(self.grpc.stop(self.config.timeout_graceful_shutdown))
        await super().shutdown(sockets=sockets)
        if stopping is not None:
            await stopping
