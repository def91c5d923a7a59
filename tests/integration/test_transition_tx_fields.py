"""Batched moves: route+tx fields (bytea, bigint, text) and new-attempt clears (NULLs)
requested at once, for many orders, keep their own values."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from order_engine.domain.orders import OrderStatus, OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.store.repository import NewOrder
from tests.stack import Stack

S = OrderStatus


async def _orders(stack: Stack, count: int) -> list[uuid.UUID]:
    services = stack.services
    key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
    assert key_id is not None
    return [(await services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9 + n, 50)))[0].id
        for n in range(count)]


async def test_moves_batched_together_keep_each_orders_own_transaction_and_nulls(
        stack: Stack) -> None:
    repo = stack.services.orders
    ids = await _orders(stack, 30)
    clear: dict[str, Any] = {"tx_signature": None, "tx_bytes": None, "tx_last_valid_slot": None}
    await asyncio.gather(*(repo.transition(i, S.PENDING, S.ROUTING, new_attempt=True, **clear)
                           for i in ids))

    def built(n: int) -> dict[str, Any]:
        return {"quotes": [], "route": [{"leg": n}], "routing": {"steps": [n]},
                "expected_amount_out": 1000 + n, "min_amount_out": 990 + n,
                "tx_signature": f"sig-{n}", "tx_bytes": bytes([n, 0, 255]) * (n + 1),
                "tx_last_valid_slot": 2**40 + n}

    # half go to building with tx fields while the other half clear theirs (new attempt
    # from retrying), all at once: two shapes, each batched
    half = len(ids) // 2
    for i in ids[half:]:
        await repo.transition(i, S.ROUTING, S.BUILDING, **built(ids.index(i)))
        await repo.transition(i, S.BUILDING, S.RETRYING)
    sizes: list[tuple[tuple[str, ...], int]] = []
    writer = repo._moves
    original = writer._write

    async def counting(fields, new_attempt, moves):  # type: ignore[no-untyped-def]
        sizes.append((fields, len(moves)))
        return await original(fields, new_attempt, moves)

    writer._write = counting  # type: ignore[method-assign]
    for shape in list(writer._shapes):
        del writer._shapes[shape]  # new batchers pick up the counting writer
    results = await asyncio.gather(
        *(repo.transition(i, S.ROUTING, S.BUILDING, **built(n))
          for n, i in enumerate(ids[:half])),
        *(repo.transition(i, S.RETRYING, S.ROUTING, new_attempt=True, **clear)
          for i in ids[half:]))
    del writer._write
    writer._shapes.clear()
    assert any(n > 1 and "tx_bytes" in f and "routing" in f for f, n in sizes), sizes
    assert any(n > 1 and "routing" not in f for f, n in sizes), sizes
    for n, i in enumerate(ids):
        order = await repo.get(i)
        if n < half:
            assert results[n][0].tx_bytes == bytes([n, 0, 255]) * (n + 1)
            assert (order.status, order.tx_signature, order.tx_bytes,
                    order.tx_last_valid_slot) == (
                "building", f"sig-{n}", bytes([n, 0, 255]) * (n + 1), 2**40 + n)
        else:
            assert (order.status, order.attempts, order.tx_signature, order.tx_bytes,
                    order.tx_last_valid_slot) == ("routing", 2, None, None, None)
