"""Acknowledged orders whose job was lost are found and executed by the worker's sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from order_engine.domain.orders import OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.store.models import Order
from order_engine.store.repository import NewOrder
from order_engine.worker.settings import sweep_unfinished_orders
from tests.stack import Stack


async def test_sweep_revives_an_order_whose_enqueue_was_lost(stack: Stack) -> None:
    services = stack.services
    key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
    assert key_id is not None
    # Committed but never enqueued: what a Redis outage during POST leaves behind.
    order, _ = await services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9, 50)
    )
    async with services.sessions.begin() as session:
        await session.execute(update(Order).where(Order.id == order.id).values(
            updated_at=datetime.now(UTC) - timedelta(minutes=1)))
    ctx: dict[str, Any] = {"services": services}

    assert order.id in await services.orders.stale_unfinished(services.settings.sweep_stale_s)

    assert await sweep_unfinished_orders(ctx) >= 1

    final = await stack.wait_terminal(str(order.id))
    assert final["status"] == "confirmed"
    assert [e["status"] for e in await stack.events(str(order.id))] == [
        "pending", "routing", "building", "submitted", "confirmed"
    ]
    assert order.id not in await services.orders.stale_unfinished(0)
