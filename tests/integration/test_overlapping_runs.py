"""Two runs of one order's job at once (a lease lapsed, Redis was wiped under a live
worker): the swap lands once, and the run that loses a compare-and-set carries on."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from order_engine.domain.errors import TransactionDroppedError, VenueTimeoutError
from order_engine.domain.orders import OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.market import tables
from order_engine.market.chain import SimulatedChain
from order_engine.services import Services
from order_engine.store.repository import NewOrder
from order_engine.worker.lease import LeaseKeeper
from order_engine.worker.pipeline import RetryLater
from order_engine.worker.settings import build_executor, execute_order
from tests.stack import Stack


class _Crash(BaseException):
    pass


class _Chain(SimulatedChain):
    def __init__(self, real: SimulatedChain) -> None:
        super().__init__(real._engine, real._pg, latency_scale=real.latency_scale)
        self.sends = 0


class _CrashBeforeSend(_Chain):
    async def send_transaction(self, raw: bytes) -> str:
        raise _Crash


async def _building_order(services: Services) -> tuple[uuid.UUID, int]:
    """A new order, routed and signed (transaction stored), never sent: as a crashed run
    leaves it."""
    key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
    assert key_id is not None
    amount = 1_000_000_000 + uuid.uuid4().int % 1_000_000_000
    order, _ = await services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, amount, 50))
    crashing = build_executor(services)
    crashing._chain = _CrashBeforeSend(services.chain)
    with pytest.raises(_Crash):
        await crashing.execute(order.id)
    return order.id, amount


async def _swaps_with_amount(services: Services, amount_in: int) -> int:
    t = tables.transactions
    async with services.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t).where(
            t.c.amount_in == Decimal(amount_in), t.c.err.is_(None)))).scalar_one())


def _run_a_chain(real: SimulatedChain, b_read: asyncio.Event, a_landed: asyncio.Event,
                 b_done: asyncio.Event, clock: dict[str, int] | None = None) -> _Chain:
    """Run A: reads the status after B did, lands the transaction, then (slow) waits for
    B to finish before it records `submitted`. With a clock, the slot passes on landing."""

    class RunA(_Chain):
        async def current_slot(self) -> int:
            return clock["slot"] if clock else await super().current_slot()

        async def get_signature_status(self, signature: str) -> Any:
            await b_read.wait()
            return await super().get_signature_status(signature)

        async def send_transaction(self, raw: bytes) -> str:
            signature = await super().send_transaction(raw)
            self.sends += 1
            if self.sends == 1:
                a_landed.set()
                if clock:
                    clock["slot"] += 1  # its last valid slot ends
                await b_done.wait()
            return signature

    return RunA(real)


async def test_the_slot_passing_between_two_runs_checks_does_not_swap_twice(
        stack: Stack) -> None:
    """B reads "not landed"; A's send lands in the last valid slot; the slot passes; B
    finds the blockhash expired. B must see A's swap, not sign a second one."""
    services = stack.services
    order_id, amount = await _building_order(services)
    last_valid = (await services.orders.get(order_id)).tx_last_valid_slot
    assert last_valid is not None
    clock = {"slot": last_valid}
    b_read, a_landed, b_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class RunB(_Chain):
        async def current_slot(self) -> int:
            return clock["slot"]

        async def get_signature_status(self, signature: str) -> Any:
            status = await super().get_signature_status(signature)
            if not b_read.is_set():
                b_read.set()
                await a_landed.wait()
            return status

    run_a, run_b = build_executor(services), build_executor(services)
    run_a._chain = _run_a_chain(services.chain, b_read, a_landed, b_done, clock)
    run_b._chain = RunB(services.chain)

    async def b() -> Any:
        try:
            return await run_b.execute(order_id)
        finally:
            b_done.set()

    await asyncio.gather(run_a.execute(order_id), b(), return_exceptions=True)
    assert await _swaps_with_amount(services, amount) == 1


async def test_a_dropped_send_does_not_undo_the_other_runs_landed_swap(stack: Stack) -> None:
    """Both runs send the stored transaction: A's lands, B's is dropped and B moves the
    order to `retrying` first. The next attempt must go on with the landed swap."""
    services = stack.services
    order_id, amount = await _building_order(services)
    b_read, a_landed, b_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class RunB(_Chain):
        async def get_signature_status(self, signature: str) -> Any:
            status = await super().get_signature_status(signature)
            b_read.set()
            return status

        async def send_transaction(self, raw: bytes) -> str:
            await a_landed.wait()
            raise TransactionDroppedError("transaction dropped: RPC node did not forward it")

    run_a, run_b = build_executor(services), build_executor(services)
    run_a._chain = _run_a_chain(services.chain, b_read, a_landed, b_done)
    run_b._chain = RunB(services.chain)

    async def b() -> None:
        try:
            with pytest.raises(RetryLater):
                await run_b.execute(order_id)
        finally:
            b_done.set()

    await asyncio.gather(run_a.execute(order_id), b())
    assert await _swaps_with_amount(services, amount) == 1
    assert (await services.orders.get(order_id)).status == "confirmed"


async def test_losing_the_race_to_retrying_does_not_fail_the_order(stack: Stack) -> None:
    """Both runs time out quoting; A moves the order to `retrying` first. B's move is
    stale: B carries on from `retrying` instead of failing the order as a bug."""
    services = stack.services
    key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
    assert key_id is not None
    order, _ = await services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9, 50))
    arrived: list[int] = []
    both_routing = asyncio.Event()

    def executor() -> Any:
        run = build_executor(services)

        async def route(_order: Any) -> Any:
            arrived.append(1)
            if len(arrived) >= 2:
                both_routing.set()
            await both_routing.wait()  # the first time, both runs are routing at once
            raise VenueTimeoutError("quote timed out")

        run._route = route  # type: ignore[method-assign,assignment]
        return run

    leases = LeaseKeeper(services.redis, services.settings.redis_url, 5)
    ctxs = [{"executor": executor(), "leases": leases, "job_id": str(order.id)}
            for _ in range(2)]
    await asyncio.gather(*(execute_order(ctx, str(order.id)) for ctx in ctxs),
                         return_exceptions=True)
    assert (await services.orders.get(order.id)).status == "retrying"
