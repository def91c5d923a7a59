"""A publish lost while the hub stayed connected shows no gap: the hub's periodic recheck
against PostgreSQL is what finds it, with one query for all the quiet orders."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping

import orjson
import pytest
import websockets
from redis.asyncio import Redis

from order_engine.api import ws
from order_engine.config import Settings
from order_engine.domain.orders import OrderStatus, OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.events import RESYNC, EventHub, LiveEvent
from order_engine.store.repository import NewOrder
from tests.stack import API_KEY, Stack, running_stack


async def test_the_recheck_resyncs_only_the_readers_behind_the_record(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url)
    hub = EventHub(redis, stack.settings.redis_prefix + ":recheck")
    quiet, busy = uuid.uuid4(), uuid.uuid4()
    asked: list[set[uuid.UUID]] = []

    async def latest_seqs(order_ids: list[uuid.UUID]) -> Mapping[uuid.UUID, int]:
        asked.append(set(order_ids))
        return {quiet: 3, busy: 9}

    behind, current, starting = (hub.subscribe(quiet) for _ in range(3))
    behind.seen_seq, current.seen_seq = 2, 3  # starting: still reading its history
    hub.subscribe(busy)
    hub._dispatch(orjson.dumps({"apiKeyId": str(uuid.uuid4()), "event": {  # a live event
        "orderId": str(busy), "seq": 1, "status": "pending"}}))
    try:
        hub.recheck_with(latest_seqs, every_s=0.05)
        assert await asyncio.wait_for(behind.wait(), 5) == [RESYNC]
        assert current.take() == []
        assert starting.take() == []
        # An order with a live event since the last round is not looked up in that round.
        assert asked[0] == {quiet}
    finally:
        await hub.stop()
        await redis.aclose()


async def test_after_a_redis_reconnect_one_lookup_finds_the_readers_behind(
    stack: Stack,
) -> None:
    redis = Redis.from_url(stack.settings.redis_url)
    hub = EventHub(redis, stack.settings.redis_prefix + ":reconnect")
    order_id = uuid.uuid4()
    asked: list[set[uuid.UUID]] = []

    async def latest_seqs(order_ids: list[uuid.UUID]) -> Mapping[uuid.UUID, int]:
        asked.append(set(order_ids))
        return {order_id: 5}  # seq 5 was published while the hub was away

    reader, starting = hub.subscribe(order_id), hub.subscribe(order_id)
    firehose = hub.subscribe_key(uuid.uuid4())
    try:
        hub._resync_all()  # no recheck yet: every reader reads for itself
        assert [reader.take(), starting.take(), firehose.take()] == [[RESYNC]] * 3

        hub.recheck_with(latest_seqs, every_s=60)
        hub._dispatch(orjson.dumps({"apiKeyId": str(uuid.uuid4()), "event": {
            "orderId": str(order_id), "seq": 4, "status": "routing"}}))
        assert len(reader.take()) == 1
        reader.seen_seq = 4
        starting.take()
        hub._resync_all()  # a reconnect: looked up at once, live event or not
        assert await asyncio.wait_for(reader.wait(), 5) == [RESYNC]
        assert asked == [{order_id}]
        assert starting.take() == []  # still reading its history: it will see seq 5
        assert firehose.take() == [RESYNC]  # dashboards refetch for themselves
    finally:
        await hub.stop()
        await redis.aclose()


async def test_latest_seqs_reads_each_orders_last_seq(stack: Stack) -> None:
    order_id = await stack.submit()
    await stack.wait_terminal(order_id)
    unknown = uuid.uuid4()

    latest = await ws._latest_seqs(stack.services, [uuid.UUID(order_id), unknown])

    assert latest == {uuid.UUID(order_id): len(await stack.events(order_id))}


async def test_a_watcher_gets_an_event_whose_publish_was_lost(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws, "QUIET_RECHECK_S", 0.2)
    async with running_stack(make_settings(), workers=0) as stack:  # nobody runs the order
        services = stack.services
        key_id = await services.api_keys.lookup(API_KEY)
        assert key_id is not None
        order, _ = await services.orders.create(
            NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9, 50))
        async with websockets.connect(f"{stack.ws_url}/ws/orders/{order.id}",
                                      additional_headers={"X-API-Key": API_KEY}) as sock:
            first = orjson.loads(await sock.recv())
            # Committed, never published: as if Redis had dropped the publish.
            await services.orders.transition(order.id, OrderStatus.PENDING,
                                             OrderStatus.ROUTING, new_attempt=True)
            second = orjson.loads(await asyncio.wait_for(sock.recv(), 5))

    assert (first["seq"], first["status"]) == (1, "pending")
    assert (second["seq"], second["status"]) == (2, "routing")


def test_a_full_subscription_keeps_only_a_resync_and_what_came_after() -> None:
    hub = EventHub(Redis(), "unused", queue_size=2)
    sub = hub.subscribe(uuid.uuid4())
    events = [LiveEvent({"seq": n}, str(n)) for n in range(1, 5)]
    for live in events:
        sub.deliver(live)

    assert sub.take() == [RESYNC, events[3]]  # 1, 2 kept; 3 overflowed: dropped, resync
    assert sub.take() == []
