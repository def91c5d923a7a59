"""`/ws/orders/{orderId}`: the order's history, then its live events, then close 1000.

Subscribe first, read the history, then stream, skipping any seq already sent: no gap,
no duplicate. A gap in what arrives live (a lost publish, a Redis reconnect, a reader too
slow for its queue) is filled from PostgreSQL, which is the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from order_engine.api.auth import Authenticator, key_from
from order_engine.api.schemas import order_to_json
from order_engine.domain.orders import OrderStatus
from order_engine.events import RESYNC, EventHub, LiveEvent, Subscription
from order_engine.services import Services
from order_engine.store.repository import OrderNotFoundError

router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
# With no live event for this long, look at PostgreSQL anyway (covers a publish lost
# while the hub was connected, which nothing else would reveal).
QUIET_RECHECK_S = 5.0
SEND_TIMEOUT_S = 10.0


class _Stream:
    def __init__(self, websocket: WebSocket, services: Services, order_id: uuid.UUID) -> None:
        self.ws = websocket
        self.services = services
        self.order_id = order_id
        self.last_seq = 0
        self.done = False

    async def send(self, message: dict[str, Any], text: str | None = None) -> None:
        seq = int(message["seq"])
        if seq <= self.last_seq:
            return  # already sent
        await asyncio.wait_for(self.ws.send_text(text or orjson.dumps(message).decode()),
                               SEND_TIMEOUT_S)
        self.last_seq = seq
        if OrderStatus(message["status"]).is_terminal:
            self.done = True

    async def catch_up(self) -> None:
        for event in await self.services.orders.events(self.order_id, self.last_seq):
            await self.send(event.to_message())

    async def on_live(self, live: LiveEvent) -> None:
        if live is RESYNC or int(live.message["seq"]) > self.last_seq + 1:
            await self.catch_up()
        else:
            await self.send(live.message, live.text)


async def _accept(websocket: WebSocket) -> uuid.UUID | None:
    """Accept, then authenticate: the contract closes a bad key with 4401, which needs an
    accepted socket. None (and closed) when the key is refused."""
    authenticator: Authenticator = websocket.app.state.authenticator
    await websocket.accept()
    key_id = await authenticator.resolve(key_from(websocket.headers, websocket.query_params))
    if key_id is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "invalid or missing API key")
    return key_id


@router.websocket("/ws/orders/{order_id}")
async def watch_order(websocket: WebSocket, order_id: str) -> None:
    services: Services = websocket.app.state.services
    hub: EventHub = websocket.app.state.hub
    key_id = await _accept(websocket)
    if key_id is None:
        return
    try:
        oid = uuid.UUID(order_id)
        await services.orders.get(oid, key_id)
    except (ValueError, OrderNotFoundError):
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # client already gone
            await websocket.send_json(
                {"type": "error", "code": "not_found", "message": f"order {order_id} not found"}
            )
            await websocket.close(CLOSE_NOT_FOUND, "order not found")
        return

    subscription = hub.subscribe(oid)
    stream = _Stream(websocket, services, oid)
    receiver = asyncio.create_task(_drain_client(websocket))
    closing = asyncio.create_task(websocket.app.state.closing.wait())
    try:
        await stream.catch_up()
        while not stream.done and not receiver.done() and not closing.done():
            getter = asyncio.ensure_future(subscription.queue.get())
            finished, _ = await asyncio.wait(
                {getter, receiver, closing}, timeout=QUIET_RECHECK_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter in finished:
                await stream.on_live(getter.result())
            else:
                getter.cancel()
                if receiver in finished or closing in finished:
                    break  # the client went away, or we are shutting down
                await stream.catch_up()
        if websocket.application_state is WebSocketState.CONNECTED:
            if stream.done:
                await websocket.close(CLOSE_NORMAL, "order reached a terminal status")
            elif closing.done():
                await websocket.close(CLOSE_GOING_AWAY, "server shutting down; reconnect")
    except (WebSocketDisconnect, TimeoutError, RuntimeError):
        pass  # client gone, or too slow to take a message within SEND_TIMEOUT_S
    finally:
        await _release(subscription, closing, receiver)
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_NORMAL)


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a disconnect is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive()
            # receive() returns the disconnect message rather than raising.
            if websocket.client_state is WebSocketState.DISCONNECTED:
                return


SNAPSHOT_ORDERS = 50


@router.websocket("/ws/orders")
async def watch_all_orders(websocket: WebSocket) -> None:
    """Every event of every order of the key (for dashboards): a snapshot of the recent
    orders, then live events. `{"type": "resync"}` when some were dropped for a slow reader
    (refetch `GET /api/orders`); closes 1001 when the server shuts down."""
    services: Services = websocket.app.state.services
    hub: EventHub = websocket.app.state.hub
    key_id = await _accept(websocket)
    if key_id is None:
        return
    # Subscribe before reading the snapshot: nothing falls between the two (the client
    # keeps, per order, the event with the highest seq).
    subscription = hub.subscribe_key(key_id)
    receiver = asyncio.create_task(_drain_client(websocket))
    closing = asyncio.create_task(websocket.app.state.closing.wait())
    try:
        orders, _ = await services.orders.list_page(key_id, None, SNAPSHOT_ORDERS, None)
        await _send(websocket, orjson.dumps(
            {"type": "snapshot", "orders": [order_to_json(o) for o in orders]}).decode())
        while not receiver.done() and not closing.done():
            getter = asyncio.ensure_future(subscription.queue.get())
            finished, _ = await asyncio.wait({getter, receiver, closing},
                                             return_when=asyncio.FIRST_COMPLETED)
            if getter not in finished:
                getter.cancel()
                break
            await _send(websocket, getter.result().text)  # RESYNC: {"type": "resync"}
        if closing.done() and websocket.application_state is WebSocketState.CONNECTED:
            await websocket.close(CLOSE_GOING_AWAY, "server shutting down; reconnect")
    except (WebSocketDisconnect, TimeoutError, RuntimeError):
        pass
    finally:
        await _release(subscription, closing, receiver)


async def _send(websocket: WebSocket, text: str) -> None:
    await asyncio.wait_for(websocket.send_text(text), SEND_TIMEOUT_S)


async def _release(subscription: Subscription, *tasks: asyncio.Task[Any]) -> None:
    """Unsubscribe and stop the helper tasks of a connection that is over."""
    subscription.close()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task
