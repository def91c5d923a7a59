"""Status changes made at the same time share statements, and each keeps its own
compare-and-set, event and error: what a caller sees is what it would see alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from order_engine.domain.orders import OrderStatus, OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.services import Services
from order_engine.store.repository import NewOrder, StaleStatusError
from tests.stack import Stack

S = OrderStatus


async def _orders(services: Services, count: int) -> list[uuid.UUID]:
    key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
    assert key_id is not None
    created = [await services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9 + n, 50))
        for n in range(count)]
    return [order.id for order, _ in created]


async def _transactions_that_wrote(services: Services, ids: list[uuid.UUID]) -> int:
    """How many transactions last wrote these orders (rows written by one share its
    xmin)."""
    return int(await services.pg.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM orders WHERE id = ANY($1::uuid[])", ids))


async def test_concurrent_changes_each_commit_their_own_event(stack: Stack) -> None:
    repo = stack.services.orders
    ids = await _orders(stack.services, 40)

    moved = await asyncio.gather(*(
        repo.transition(order_id, S.PENDING, S.ROUTING, {"n": n}, new_attempt=True,
                        tx_signature=None)
        for n, order_id in enumerate(ids)))
    # 40 changes requested at once: a handful of commits, not 40.
    assert await _transactions_that_wrote(stack.services, ids) <= 3
    routed = await asyncio.gather(*(
        repo.transition(order_id, S.ROUTING, S.BUILDING, {"n": n},
                        expected_amount_out=1000 + n, min_amount_out=990 + n,
                        routing={"steps": [n]}, route=[{"leg": n}], quotes=[])
        for n, order_id in enumerate(ids)))
    assert await _transactions_that_wrote(stack.services, ids) <= 3  # JSON lists too

    for n, (order_id, (order, event), (built, built_event)) in enumerate(
            zip(ids, moved, routed, strict=True)):
        assert (order.id, order.status, order.attempts, event.seq) == (order_id, "routing", 1, 2)
        assert (built.status, built.expected_amount_out, built.min_amount_out) == (
            "building", 1000 + n, 990 + n)
        assert built.routing == {"steps": [n]}
        assert (built.route, built.quotes) == ([{"leg": n}], [])
        assert built_event.seq == 3
        history = await repo.events(order_id)
        assert [(e.seq, e.status, e.payload) for e in history] == [
            (1, S.PENDING, history[0].payload), (2, S.ROUTING, {"n": n}),
            (3, S.BUILDING, {"n": n})]


async def test_a_lost_compare_and_set_in_a_batch_is_that_callers_alone(stack: Stack) -> None:
    repo = stack.services.orders
    ids = await _orders(stack.services, 10)
    stale = ids[3]
    await repo.transition(stale, S.PENDING, S.ROUTING, new_attempt=True)

    results = await asyncio.gather(
        *(repo.transition(order_id, S.PENDING, S.ROUTING, new_attempt=True)
          for order_id in ids), return_exceptions=True)

    errors = [(order_id, r) for order_id, r in zip(ids, results, strict=True)
              if isinstance(r, BaseException)]
    assert [order_id for order_id, _ in errors] == [stale]
    assert isinstance(errors[0][1], StaleStatusError)
    assert errors[0][1].actual is S.ROUTING
    assert len(await repo.events(stale)) == 2  # its one move, not a second


async def test_the_same_order_moved_twice_at_once_moves_once(stack: Stack) -> None:
    repo = stack.services.orders
    [order_id] = await _orders(stack.services, 1)

    results = await asyncio.gather(
        *(repo.transition(order_id, S.PENDING, S.ROUTING, {"run": run}, new_attempt=True)
          for run in range(5)), return_exceptions=True)

    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, StaleStatusError) for r in results if r not in winners)
    events = await repo.events(order_id)
    assert [e.seq for e in events] == [1, 2]
    assert (await repo.get(order_id)).attempts == 1


async def test_a_change_postgresql_refuses_fails_alone(stack: Stack) -> None:
    repo = stack.services.orders
    ids = await _orders(stack.services, 8)
    bad = ids[5]

    results = await asyncio.gather(*(
        # jsonb cannot hold U+0000: PostgreSQL refuses that row, and so the statement.
        repo.transition(order_id, S.PENDING, S.ROUTING,
                        {"note": "nul\u0000" if order_id == bad else "ok"}, new_attempt=True)
        for order_id in ids), return_exceptions=True)

    for order_id, result in zip(ids, results, strict=True):
        if order_id == bad:
            assert isinstance(result, Exception)
            assert not isinstance(result, StaleStatusError)
            assert (await repo.get(order_id)).status == "pending"
        else:
            assert not isinstance(result, BaseException), result
            assert result[0].status == "routing"


@pytest.mark.parametrize("callers", [1, 30])
async def test_a_caller_that_gives_up_leaves_the_others_unharmed(
    stack: Stack, callers: int,
) -> None:
    repo = stack.services.orders
    ids = await _orders(stack.services, callers + 1)
    quitter = asyncio.create_task(
        repo.transition(ids[0], S.PENDING, S.ROUTING, new_attempt=True))
    others = [asyncio.create_task(repo.transition(order_id, S.PENDING, S.ROUTING,
                                                  new_attempt=True)) for order_id in ids[1:]]
    quitter.cancel()

    done = await asyncio.gather(*others)
    assert [order.status for order, _ in done] == ["routing"] * callers
    # The one that gave up either moved (it was being written) or did not: never half.
    order = await repo.get(ids[0])
    assert len(await repo.events(ids[0])) == order.last_seq


async def test_signed_transactions_recorded_together_keep_their_compare_and_set(
    stack: Stack,
) -> None:
    repo = stack.services.orders
    ids = await _orders(stack.services, 12)
    for order_id in ids:
        await repo.transition(order_id, S.PENDING, S.ROUTING, new_attempt=True)
        await repo.transition(order_id, S.ROUTING, S.BUILDING)
    raced = ids[0]

    results = await asyncio.gather(
        *(repo.record_transaction(order_id, None, f"sig-{n}", b"tx%d" % n, 100 + n)
          for n, order_id in enumerate(ids)),
        # A second run of the first order, building its own transaction at the same time.
        repo.record_transaction(raced, None, "sig-other-run", b"other", 1),
        return_exceptions=True)

    assert results[:-1] == [None] * 12
    assert isinstance(results[-1], StaleStatusError)  # the first one stored won
    assert await _transactions_that_wrote(stack.services, ids) <= 3
    for n, order_id in enumerate(ids):
        order = await repo.get(order_id)
        assert (order.tx_signature, order.tx_bytes, order.tx_last_valid_slot) == (
            f"sig-{n}", b"tx%d" % n, 100 + n)
