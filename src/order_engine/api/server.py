"""Running the API under uvicorn, with a shutdown that says goodbye to WebSockets.

uvicorn closes open WebSockets with 1012 (service restart) on SIGTERM. Our contract says
1001 (going away): before uvicorn's own shutdown, the watchers are told to close with
1001, and get a moment to do so. Clients reconnect (to this API once restarted, or to
another) and the replay-then-live protocol gives them the rest with no gap.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from fastapi import FastAPI

from order_engine.api.app import create_app
from order_engine.config import Settings

WS_CLOSE_WAIT_S = 2.0


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        closing: asyncio.Event | None = getattr(self._app.state, "closing", None)
        if closing is not None:
            closing.set()
            hub = getattr(self._app.state, "hub", None)
            deadline = asyncio.get_running_loop().time() + WS_CLOSE_WAIT_S
            # Polling is fine here: it runs once, for at most two seconds, at shutdown.
            while hub is not None and hub.subscriber_count and (  # noqa: ASYNC110
                asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.05)
        await super().shutdown(sockets)


def reusable_socket(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT: several API processes can serve one port, and
    the kernel spreads connections across them (`order-engine up --api-processes N`)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def api_server(settings: Settings, **config: object) -> GracefulServer:
    app = create_app(settings)
    uvicorn_config = uvicorn.Config(
        app, host=settings.host, port=settings.port, lifespan="on",
        timeout_graceful_shutdown=10, **config,  # type: ignore[arg-type]
    )
    return GracefulServer(uvicorn_config, app)
