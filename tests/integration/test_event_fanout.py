"""Live events: a slow reader never holds up the others, and it can always catch up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from order_engine.config import Settings
from order_engine.domain.orders import OrderStatus
from order_engine.events import RESYNC, EventHub, EventPublisher
from order_engine.store.repository import EventRecord
from tests.stack import Stack


def _event(order_id: uuid.UUID, seq: int) -> EventRecord:
    return EventRecord(order_id, uuid.uuid4(), seq, OrderStatus.ROUTING, 1, {},
                       datetime.now(UTC))


async def test_a_slow_reader_is_told_to_resync_and_never_blocks_a_fast_one(
    stack: Stack,
) -> None:
    settings: Settings = stack.settings
    redis = Redis.from_url(settings.redis_url)
    hub = EventHub(redis, settings.redis_prefix + ":fanout", queue_size=3)
    publisher = EventPublisher(redis, settings.redis_prefix + ":fanout")
    await hub.start()
    try:
        order_id = uuid.uuid4()
        slow = hub.subscribe(order_id)  # never reads
        fast = hub.subscribe(order_id)
        received: list[int] = []

        async def read_fast() -> None:
            while len(received) < 20:
                received.extend(int(live.message["seq"]) for live in await fast.wait())

        reader = asyncio.create_task(read_fast())
        for seq in range(1, 21):
            await publisher.publish(_event(order_id, seq))
            await asyncio.sleep(0.005)
        await asyncio.wait_for(reader, 10)

        assert received == list(range(1, 21))
        backlog = slow.take()
        assert backlog[0] is RESYNC  # it lost live events and knows it
        assert len(backlog) <= 3
        slow.close()
        fast.close()
        assert hub.subscriber_count == 0
    finally:
        await hub.stop()
        await redis.aclose()


async def test_a_watcher_that_reads_slowly_still_gets_the_whole_history(stack: Stack) -> None:
    import orjson
    import websockets

    order_id = await stack.submit()
    async with websockets.connect(
        f"{stack.ws_url}/ws/orders/{order_id}", additional_headers={"X-API-Key": stack.settings
                                                                   .bootstrap_api_key},
        max_queue=1,
    ) as ws:
        await stack.wait_terminal(order_id)  # everything happened while we did not read
        seqs = []
        async for raw in ws:
            seqs.append(orjson.loads(raw)["seq"])
            await asyncio.sleep(0.05)
    assert seqs == [1, 2, 3, 4, 5]
    assert ws.close_code == 1000
