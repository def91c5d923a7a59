"""A watcher that goes away frees what the API held for it at once: with thousands of
sockets per process, a leak per departed socket would be the API's memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import websockets

from order_engine.config import Settings
from order_engine.events import EventHub
from tests.stack import API_KEY, running_stack


async def _until_no_subscribers(hub: EventHub) -> None:
    async with asyncio.timeout(5):
        while hub.subscriber_count:  # noqa: ASYNC110 - the count has no event to wait on
            await asyncio.sleep(0.01)


async def test_watchers_that_leave_mid_stream_are_unsubscribed(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_stack(make_settings(), workers=0) as stack:  # orders stay pending
        assert stack.hub is not None
        order_id = await stack.submit()
        headers = {"X-API-Key": API_KEY}
        sockets = [
            await websockets.connect(f"{stack.ws_url}/ws/orders/{order_id}",
                                     additional_headers=headers)
            for _ in range(20)
        ] + [await websockets.connect(f"{stack.ws_url}/ws/orders", additional_headers=headers)]
        for sock in sockets:
            await sock.recv()  # the history's first event, or the firehose's snapshot
        assert stack.hub.subscriber_count == 21

        for sock in sockets[:10]:
            await sock.close()
        for sock in sockets[10:]:  # gone without a closing handshake
            sock.transport.abort()
        await _until_no_subscribers(stack.hub)

        # And the API still serves a new watcher.
        async with websockets.connect(f"{stack.ws_url}/ws/orders/{order_id}",
                                      additional_headers=headers) as again:
            assert '"pending"' in str(await asyncio.wait_for(again.recv(), 5))
