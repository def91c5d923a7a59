"""`/ws/orders/{orderId}`: the order's history, then its live events, then close 1000.

Subscribe first, read the history, then stream, skipping any seq already sent: no gap,
no duplicate. A gap in what arrives live (a lost publish, a Redis reconnect, a reader too
slow for its queue) is filled from PostgreSQL, which is the record.

Built to hold many idle sockets in one process: per socket, one task sends (the ASGI one)
and one reads (to notice a disconnect at once); nothing else waits per socket, nothing is
created per event but the send itself. The client going away and the server shutting
down both end the socket's subscription, which wakes its sender. The routes are plain
Starlette ones: FastAPI's dependency injection would keep three exit stacks per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError
from sqlalchemy import select
from starlette.datastructures import Headers, QueryParams
from starlette.websockets import WebSocketState

from order_engine.api.auth import REVOKED, Authenticator, key_from
from order_engine.api.rate_limits import SocketSlots
from order_engine.api.schemas import order_to_json
from order_engine.domain.orders import OrderStatus
from order_engine.events import RESYNC, Ended, EventHub, LiveEvent, Subscription
from order_engine.services import Services
from order_engine.store.db import DATABASE_ERRORS
from order_engine.store.models import Order
from order_engine.store.repository import EventRecord

router = APIRouter()
log = structlog.get_logger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429  # as HTTP's 429, in the 4000s as 4401 and 4404 are
REVOKED_REASON = "API key revoked"
# An order with no live event for about this long is looked up in PostgreSQL anyway
# (covers a publish lost while the hub was connected, which nothing else would reveal).
QUIET_RECHECK_S = 5.0
SEND_TIMEOUT_S = 10.0
SNAPSHOT_ORDERS = 50


class _ClientTooSlow(Exception):
    """The client did not take a message within SEND_TIMEOUT_S."""


# The client is gone, or too slow.
_CLIENT_GONE = (WebSocketDisconnect, _ClientTooSlow, RuntimeError)
# PostgreSQL or Redis did not answer (a query timing out too): close 1011, the client
# reconnects.
_BACKEND_DOWN: tuple[type[Exception], ...] = (
    *DATABASE_ERRORS, RedisError, ConnectionError, TimeoutError)


async def _send(websocket: WebSocket, text: str) -> None:
    # asyncio.timeout, not wait_for: wait_for wraps every send in a task of its own.
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await websocket.send_text(text)
    except TimeoutError:
        raise _ClientTooSlow from None


class _Stream:
    """What one watcher of one order has been sent: each seq once, in order."""

    __slots__ = ("done", "services", "sub", "ws")

    def __init__(self, websocket: WebSocket, services: Services,
                 subscription: Subscription) -> None:
        self.ws = websocket
        self.services = services
        self.sub = subscription  # its seen_seq is the last seq sent
        self.done = False

    async def send(self, message: dict[str, Any], text: str | None = None) -> None:
        seq = int(message["seq"])
        if seq <= self.sub.seen_seq:
            return  # already sent
        await _send(self.ws, text or orjson.dumps(message).decode())
        self.sub.seen_seq = seq
        if OrderStatus(message["status"]).is_terminal:
            self.done = True

    async def send_events(self, events: list[EventRecord]) -> None:
        for event in events:
            await self.send(event.to_message())

    async def catch_up(self) -> None:
        await self.send_events(
            await self.services.orders.events(self.sub.order_id, self.sub.seen_seq))

    async def on_live(self, live: LiveEvent) -> None:
        if live is RESYNC or int(live.message["seq"]) > self.sub.seen_seq + 1:
            await self.catch_up()
        else:
            await self.send(live.message, live.text)


def _socket_handler(kind: str) -> Callable[
    [Callable[[WebSocket, uuid.UUID], Awaitable[None]]], Callable[[WebSocket], Awaitable[None]]
]:
    """The handler of a kind of socket ("order" or "firehose", each counted per key)."""
    return functools.partial(_handle_sockets, kind)


def _handle_sockets(
    kind: str, run: Callable[[WebSocket, uuid.UUID], Awaitable[None]],
) -> Callable[[WebSocket], Awaitable[None]]:
    """Accept, authenticate, run; however it ends, the socket ends closed. The contract
    closes a bad key with 4401, which needs an accepted socket, and a key over its
    number of sockets with 4429. A client gone is nothing
    to report; PostgreSQL or Redis not answering closes 1011 (the client reconnects)."""

    @functools.wraps(run)
    async def handle(websocket: WebSocket) -> None:
        authenticator: Authenticator = websocket.app.state.authenticator
        await websocket.accept()
        try:
            # Not websocket.headers / .query_params: the socket would keep them for life.
            key = key_from(Headers(raw=websocket.scope["headers"]),
                           QueryParams(websocket.scope["query_string"]))
            # Nothing reads them again, and the scope lives as long as the socket.
            websocket.scope["headers"] = []
            key_id = await authenticator.resolve(key)
            if key_id is None:
                revoked = authenticator.refusal(key) is REVOKED
                await _refuse(websocket, CLOSE_UNAUTHORIZED,
                              REVOKED_REASON if revoked else "invalid or missing API key")
                return
            slots: SocketSlots = websocket.app.state.socket_slots[kind]
            slot = await slots.acquire(key_id)
            if slot is None:
                await _refuse(websocket, CLOSE_TOO_MANY, f"this API key has {slots.limit} "
                              f"such WebSockets open ({slots.setting})")
                return
            try:
                await run(websocket, key_id)
            finally:
                await slots.release(key_id, slot)
        except _CLIENT_GONE:
            pass
        except _BACKEND_DOWN as exc:
            log.warning("dependency unavailable", path=websocket.url.path,
                        error=f"{type(exc).__name__}: {exc}")
            await _close(websocket, CLOSE_INTERNAL_ERROR,
                         "backing service unavailable; reconnect")
        finally:
            await _close(websocket, CLOSE_NORMAL)

    return handle


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Close after REFUSAL_DELAY_S, as the HTTP gate answers its refusals (api/gate.py)."""
    await asyncio.sleep(websocket.app.state.settings.refusal_delay_s)
    await _close(websocket, code, reason)


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(*_CLIENT_GONE):
            await websocket.close(code, reason)


async def _close_ended(websocket: WebSocket, ended: Ended | None) -> None:
    """Close as the subscription's end says: 1001 for a shutdown, 4401 for a revoked key
    (nothing for a client gone)."""
    if ended is Ended.SHUTDOWN:
        await _close(websocket, CLOSE_GOING_AWAY, "server shutting down; reconnect")
    elif ended is Ended.KEY_REVOKED:
        await _close(websocket, CLOSE_UNAUTHORIZED, REVOKED_REASON)


async def _not_found(websocket: WebSocket, order_id: str) -> None:
    await websocket.send_json(
        {"type": "error", "code": "not_found", "message": f"order {order_id} not found"})
    await _close(websocket, CLOSE_NOT_FOUND, "order not found")


async def _latest_seqs(services: Services, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The hub's recheck: each order's last seq (kept on the order, with each event)."""
    async with services.sessions() as session:
        rows = await session.execute(
            select(Order.id, Order.last_seq).where(Order.id.in_(order_ids)))
    return dict(rows.all())  # not dict(rows): a Result has keys() (its columns)


@router.websocket_route("/ws/orders/{order_id}")
@_socket_handler("order")
async def watch_order(websocket: WebSocket, key_id: uuid.UUID) -> None:
    services: Services = websocket.app.state.services
    hub: EventHub = websocket.app.state.hub
    order_id: str = websocket.path_params["order_id"]
    try:
        oid = uuid.UUID(order_id)
    except ValueError:
        await _not_found(websocket, order_id)
        return
    # Started by the first watcher: the hub cannot reach PostgreSQL by itself.
    hub.recheck_with(functools.partial(_latest_seqs, services), QUIET_RECHECK_S)
    # Before reading the history: nothing falls between.
    subscription = hub.subscribe(oid, owner=key_id)
    reader: asyncio.Task[None] | None = None
    try:
        history = await services.orders.events(oid)
        # An order's first event is committed with it: no history, or another key's,
        # is the same "not found" (a foreign order's existence is not revealed).
        if not history or history[0].api_key_id != key_id:
            await _not_found(websocket, order_id)
            return
        reader = asyncio.create_task(_end_when_client_leaves(websocket, subscription))
        stream = _Stream(websocket, services, subscription)
        await stream.send_events(history)
        del history  # else kept, in this frame, as long as the socket
        while not stream.done:
            batch = await subscription.wait()
            if subscription.ended is not None:
                break
            for live in batch:
                await stream.on_live(live)
        if stream.done:
            await _close(websocket, CLOSE_NORMAL, "order reached a terminal status")
        else:
            await _close_ended(websocket, subscription.ended)
    finally:
        await _release(subscription, reader)


async def _end_when_client_leaves(websocket: WebSocket, subscription: Subscription) -> None:
    """Read (and ignore) what the client sends; when it goes away, end the subscription,
    which wakes the sender at once."""
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        subscription.end(Ended.CLIENT_GONE)


async def _snapshot(services: Services, key_id: uuid.UUID) -> str:
    """The firehose's first message. A function of its own so that the orders read for
    it are freed as soon as it is made: kept for the socket's life, they were most of an
    idle firehose's memory (about 250 KiB)."""
    orders, _ = await services.orders.list_page(key_id, None, SNAPSHOT_ORDERS, None)
    return orjson.dumps(
        {"type": "snapshot", "orders": [order_to_json(o) for o in orders]}).decode()


@router.websocket_route("/ws/orders")
@_socket_handler("firehose")
async def watch_all_orders(websocket: WebSocket, key_id: uuid.UUID) -> None:
    """Every event of every order of the key (for dashboards): a snapshot of the recent
    orders, then live events. `{"type": "resync"}` when some were dropped for a slow reader
    (refetch `GET /api/orders`); closes 1001 when the server shuts down."""
    services: Services = websocket.app.state.services
    hub: EventHub = websocket.app.state.hub
    # Subscribe before reading the snapshot: nothing falls between the two (the client
    # keeps, per order, the event with the highest seq).
    subscription = hub.subscribe_key(key_id)
    reader = asyncio.create_task(_end_when_client_leaves(websocket, subscription))
    try:
        await _send(websocket, await _snapshot(services, key_id))
        while True:
            batch = await subscription.wait()
            if subscription.ended is not None:
                break
            for live in batch:
                await _send(websocket, live.text)  # RESYNC: {"type": "resync"}
        await _close_ended(websocket, subscription.ended)
    finally:
        await _release(subscription, reader)


async def _release(subscription: Subscription, reader: asyncio.Task[None] | None) -> None:
    """Unsubscribe, and stop the reading task of a connection that is over."""
    subscription.close()
    if reader is not None:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
