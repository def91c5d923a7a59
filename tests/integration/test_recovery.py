"""Re-running an order's job at any point converges, and never swaps twice."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from arq import Retry
from sqlalchemy import func, select, update

from order_engine.domain.orders import OrderStatus, OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.market import tables
from order_engine.market.chain import SimulatedChain
from order_engine.services import Services
from order_engine.store.models import Order
from order_engine.store.repository import NewOrder
from order_engine.worker.lease import LeaseKeeper
from order_engine.worker.settings import build_executor, execute_order
from tests.chain_audit import landed_count
from tests.stack import Stack


class SimulatedCrash(BaseException):
    """The process dies here (BaseException: nothing in the pipeline may catch it)."""


class CrashingChain(SimulatedChain):
    """The real chain, but the worker dies just before or just after sending."""

    def __init__(self, real: SimulatedChain, when: str) -> None:
        super().__init__(real._engine, real._pg, latency_scale=real.latency_scale)
        self.when = when

    async def send_transaction(self, raw: bytes) -> str:
        if self.when == "before-send":
            raise SimulatedCrash
        await super().send_transaction(raw)
        raise SimulatedCrash


async def _new_order(services: Services, amount_in: int) -> uuid.UUID:
    key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
    assert key_id is not None
    order, _ = await services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, amount_in, 50)
    )
    return order.id


async def _swaps_with_amount(services: Services, amount_in: int) -> int:
    t = tables.transactions
    async with services.engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(t).where(
                t.c.amount_in == Decimal(amount_in), t.c.err.is_(None)
            )
        )).scalar_one())


def _unique_amount() -> int:
    return 1_000_000_000 + uuid.uuid4().int % 1_000_000_000


@pytest.mark.parametrize("when", ["before-send", "after-send"])
async def test_crash_around_send_then_rerun_swaps_exactly_once(stack: Stack, when: str) -> None:
    services = stack.services
    amount = _unique_amount()
    order_id = await _new_order(services, amount)
    crashing = build_executor(services)
    crashing._chain = CrashingChain(services.chain, when)
    with pytest.raises(SimulatedCrash):
        await crashing.execute(order_id)
    crashed = await services.orders.get(order_id)
    assert crashed.status == OrderStatus.BUILDING
    assert crashed.tx_signature is not None  # persisted before sending

    assert await build_executor(services).execute(order_id) is OrderStatus.CONFIRMED

    final = await services.orders.get(order_id)
    assert final.tx_signature == crashed.tx_signature  # the same transaction, not a new one
    assert await _swaps_with_amount(services, amount) == 1


async def test_rerun_after_the_blockhash_expired_builds_a_new_transaction(stack: Stack) -> None:
    services = stack.services
    amount = _unique_amount()
    order_id = await _new_order(services, amount)
    crashing = build_executor(services)
    crashing._chain = CrashingChain(services.chain, "before-send")
    with pytest.raises(SimulatedCrash):
        await crashing.execute(order_id)
    old_signature = (await services.orders.get(order_id)).tx_signature
    # Time passes: the chain moves on a couple of slots and that blockhash expires.
    await asyncio.sleep(services.chain.slot_seconds * 2)
    async with services.sessions.begin() as session:
        await session.execute(update(Order).where(Order.id == order_id)
                              .values(tx_last_valid_slot=-1))
        await session.execute(
            update(tables.blockhashes)
            .where(tables.blockhashes.c.slot < await services.chain.current_slot())
            .values(last_valid_slot=-1)
        )

    assert await build_executor(services).execute(order_id) is OrderStatus.CONFIRMED

    final = await services.orders.get(order_id)
    assert final.tx_signature != old_signature
    assert await _swaps_with_amount(services, amount) == 1


async def test_two_runs_of_the_same_job_at_once_swap_once(stack: Stack) -> None:
    services = stack.services
    amount = _unique_amount()
    order_id = await _new_order(services, amount)

    results = await asyncio.gather(
        *(build_executor(services).execute(order_id) for _ in range(4))
    )

    assert set(results) == {OrderStatus.CONFIRMED}
    assert await _swaps_with_amount(services, amount) == 1
    events = await services.orders.events(order_id)
    assert [e.status.value for e in events] == [
        "pending", "routing", "building", "submitted", "confirmed"
    ]


async def test_redelivered_job_for_a_finished_order_does_nothing(stack: Stack) -> None:
    order_id = await stack.submit()
    await stack.wait_terminal(order_id)
    before = await stack.events(order_id)

    status = await build_executor(stack.services).execute(uuid.UUID(order_id))

    assert status is OrderStatus.CONFIRMED
    assert await stack.events(order_id) == before


async def test_identical_orders_get_distinct_transactions_and_both_land(stack: Stack) -> None:
    # Same pair, amount and slippage, at the same moment: without the memo naming the
    # order, both would sign byte-identical transactions and the chain would apply one.
    ids = await asyncio.gather(*(stack.submit(amount="0.777", slippageBps=500)
                                 for _ in range(4)))
    orders = [await stack.wait_terminal(order_id) for order_id in ids]
    assert [o["status"] for o in orders] == ["confirmed"] * 4
    signatures = {o["txHash"] for o in orders}
    assert len(signatures) == 4
    assert await landed_count(stack.services.engine, list(signatures)) == 4


class BrokenChain(SimulatedChain):
    """A bug in the chain client: it raises something the pipeline does not expect."""

    def __init__(self, real: SimulatedChain) -> None:
        super().__init__(real._engine, real._pg, latency_scale=real.latency_scale)

    async def get_latest_blockhash(self) -> Any:
        raise ValueError("unexpected shape of RPC answer")

    async def get_signature_status(self, signature: str) -> Any:
        raise ValueError("unexpected shape of RPC answer")


async def test_a_bug_before_any_transaction_fails_the_order_with_the_reason(
    stack: Stack,
) -> None:
    services = stack.services
    order_id = await _new_order(services, _unique_amount())
    executor = build_executor(services)
    executor._chain = BrokenChain(services.chain)
    leases = LeaseKeeper(services.redis, services.settings.redis_url, 5)
    ctx = {"executor": executor, "leases": leases, "job_id": str(order_id)}

    assert await execute_order(ctx, str(order_id)) == "failed"

    order = await services.orders.get(order_id)
    assert order.status == "failed"
    assert order.failure_reason == "internal error: ValueError: unexpected shape of RPC answer"


async def test_a_bug_after_signing_retries_instead_of_guessing(stack: Stack) -> None:
    services = stack.services
    order_id = await _new_order(services, _unique_amount())
    crashing = build_executor(services)
    crashing._chain = CrashingChain(services.chain, "before-send")
    with pytest.raises(SimulatedCrash):
        await crashing.execute(order_id)  # signed and stored, never sent
    executor = build_executor(services)
    executor._chain = BrokenChain(services.chain)
    leases = LeaseKeeper(services.redis, services.settings.redis_url, 5)
    ctx = {"executor": executor, "leases": leases, "job_id": str(order_id)}

    with pytest.raises(Retry):
        await execute_order(ctx, str(order_id))
    assert (await services.orders.get(order_id)).status == "building"  # not failed

    assert await build_executor(services).execute(order_id) is OrderStatus.CONFIRMED


async def test_a_job_whose_order_does_not_exist_is_dropped(stack: Stack) -> None:
    """Not retried, not an error trace per try: there is nothing to execute."""
    services = stack.services
    missing = str(uuid.uuid4())
    ctx = {"executor": build_executor(services), "job_id": missing,
           "leases": LeaseKeeper(services.redis, services.settings.redis_url, 5)}
    assert await execute_order(ctx, missing) == "missing"
