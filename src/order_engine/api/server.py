"""Running the API under uvicorn, with a shutdown that says goodbye to WebSockets.

uvicorn closes open WebSockets with 1012 (service restart) on SIGTERM. Our contract says
1001 (going away): before uvicorn's own shutdown, the hub ends every subscription, which
tells each watcher to close with 1001, and they get a moment to do so. Clients reconnect
(to this API once restarted, or to another) and the replay-then-live protocol gives them
the rest with no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from order_engine.api import ws
from order_engine.api.app import create_app
from order_engine.api.protocol import HttpLimits, bounded_http_protocol
from order_engine.config import Settings
from order_engine.events import EventHub

WS_CLOSE_WAIT_S = 2.0


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub: EventHub | None = getattr(self.app.state, "hub", None)
        if hub is not None:  # None when the lifespan never started
            hub.end_all()
            deadline = asyncio.get_running_loop().time() + WS_CLOSE_WAIT_S
            # Polling is fine here: it runs once, for at most two seconds, at shutdown.
            while hub.subscriber_count and (  # noqa: ASYNC110
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


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


async def _wait_among(waiters: list[asyncio.Future[None]]) -> None:
    """Wait until `_wake_all(waiters)` (or cancellation); the waiter leaves the list."""
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    finally:
        waiters.remove(waiter)


class _Inbox:
    """What uvicorn's WebSocket protocol uses of an asyncio.Queue (put_nowait, get,
    empty), unbounded, without its three deques and an Event: about 3 KiB per socket."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] = []

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        _wake_all(self._getters)  # each one re-checks: a getter cancelled meanwhile loses nothing

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            await _wait_among(self._getters)
        return self._items.pop(0)


class _Flag:
    """What uvicorn's WebSocket protocol uses of an asyncio.Event (set, clear, wait),
    with no deque while nobody waits."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = True
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        self._is_set = True
        _wake_all(self._waiters)

    def clear(self) -> None:
        self._is_set = False

    def is_set(self) -> bool:
        return self._is_set

    async def wait(self) -> bool:
        if not self._is_set:  # like asyncio.Event: woken by set(), cleared since or not
            await _wait_among(self._waiters)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, lighter per idle socket (10,000 per process
    is the aim): a light receive queue and writability flag, and the handshake's request
    and response (their headers) let go once the socket is accepted, which uvicorn keeps
    for the connection's life but never reads again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            del self.request, self.response


class WebSocketsFirst:
    """The ASGI app uvicorn runs: WebSocket connections go straight to their route's
    endpoint; all else to the FastAPI app. A suspended handler keeps every frame of the
    middleware stack and routing above it alive, about 7 KiB per idle socket, and those
    layers (exception handlers that answer in HTTP, request-body limits, exit stacks for
    dependencies) do nothing for these endpoints, which handle their own errors."""

    def __init__(self, app: FastAPI, routes: list[BaseRoute]) -> None:
        self.app = app
        self._routes = [route for route in routes if isinstance(route, WebSocketRoute)]

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not async: what it returns is awaited directly, one frame fewer per socket.
        if scope["type"] == "websocket":
            for route in self._routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope, app=self.app)  # `websocket.app` is the app
                    endpoint: Callable[[WebSocket], Awaitable[None]] = route.endpoint
                    return endpoint(WebSocket(scope, receive, send))
        return self.app(scope, receive, send)


# Sized for many idle WebSockets per process (measured in BENCHMARKS.md, "WebSocket
# fan-out"). websockets-sansio (lightened above): uvicorn's lightest implementation
# here, with no task of its own per socket. No permessage-deflate: its zlib streams cost
# about 45 KiB per socket (more than everything else together), and every event would
# be compressed once per watcher; events are a few hundred bytes. Clients send nothing
# but control frames, so a small max message size bounds what one can make us buffer.
WEBSOCKET_CONFIG: dict[str, object] = {
    "ws": LeanWebSocketProtocol,
    "ws_per_message_deflate": False,
    "ws_max_size": 64 * 1024,
}


def allow_many_sockets() -> None:
    """Raise this process's open-file limit to its hard limit: thousands of sockets do
    not fit the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # a limit the kernel refuses
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def http_config(settings: Settings) -> dict[str, object]:
    """uvicorn's HTTP/1.1 protocol (httptools) with the bounds of api/protocol.py."""
    limits = HttpLimits(max_head_bytes=settings.max_header_bytes,
                        head_timeout_s=settings.header_timeout_s,
                        body_timeout_s=settings.body_timeout_s,
                        refusal_delay_s=settings.refusal_delay_s)
    return {"http": bounded_http_protocol(limits),
            "timeout_keep_alive": settings.keep_alive_timeout_s}


def api_server(settings: Settings, **config: object) -> GracefulServer:
    allow_many_sockets()
    app = create_app(settings)
    uvicorn_config = uvicorn.Config(
        WebSocketsFirst(app, ws.router.routes), host=settings.host, port=settings.port,
        interface="asgi3",  # not guessed: WebSocketsFirst.__call__ is not a coroutine function
        lifespan="on", timeout_graceful_shutdown=10,
        **{**WEBSOCKET_CONFIG, **http_config(settings), **config},  # type: ignore[arg-type]
    )
    return GracefulServer(uvicorn_config, app)
