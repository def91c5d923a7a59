"""Execution meets a market that moved: slippage fails the attempt and the next re-quotes;
a pool that cannot fill fails the order for good."""

from __future__ import annotations

import contextlib
import uuid

from solders.pubkey import Pubkey

from order_engine.domain.amm import Venue
from order_engine.domain.errors import TransientError
from order_engine.domain.orders import OrderStatus, OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.market.chain import SimulatedChain
from order_engine.market.config import load_market_config
from order_engine.market.pool_codec import mints_of, reserves_of
from order_engine.market.programs import RouteInstruction, RouteStep, pool_address
from order_engine.market.simulator import MarketSimulator, Trade
from order_engine.market.transactions import engine_wallet, sign_transaction
from order_engine.store.repository import NewOrder
from order_engine.worker.pipeline import RetryLater
from order_engine.worker.settings import build_executor
from tests.stack import Stack


class FrontRunningChain(SimulatedChain):
    """Before the first transaction it sees, someone dumps SOL into every SOL pool (a fifth
    of what each holds: enough to move a DLMM pool several bins, not just within one)."""

    def __init__(self, real: SimulatedChain) -> None:
        super().__init__(real._engine, real._pg, latency_scale=real.latency_scale)
        self.front_runs = 0

    async def send_transaction(self, raw: bytes) -> str:
        if self.front_runs == 0:
            self.front_runs += 1
            market = MarketSimulator(self, load_market_config())
            for pool in await self.get_pools():
                if SOL.mint in mints_of(pool):
                    sol_side = reserves_of(pool)[mints_of(pool).index(SOL.mint)]
                    await market._send(Trade(pool, SOL.mint, sol_side // 5, "noise"))
        return await super().send_transaction(raw)


async def _order(stack: Stack, amount_in: int, slippage_bps: int) -> uuid.UUID:
    key_id = await stack.services.api_keys.lookup(stack.settings.bootstrap_api_key)
    assert key_id is not None
    order, _ = await stack.services.orders.create(
        NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, amount_in, slippage_bps)
    )
    return order.id


async def test_a_price_move_before_execution_fails_the_attempt_and_the_retry_requotes(
    stack: Stack,
) -> None:
    services = stack.services
    order_id = await _order(stack, 10 * 10**9, slippage_bps=20)
    executor = build_executor(services)
    executor._chain = FrontRunningChain(services.chain)

    with contextlib.suppress(RetryLater):
        await executor.execute(order_id)
    first = await services.orders.get(order_id)
    assert first.status == OrderStatus.RETRYING
    assert await executor.execute(order_id) is OrderStatus.CONFIRMED

    events = await services.orders.events(order_id)
    statuses = [e.status.value for e in events]
    assert statuses == ["pending", "routing", "building", "submitted", "retrying",
                        "routing", "building", "submitted", "confirmed"]
    retry = events[4].payload
    assert "ExceededSlippage" in retry["error"]
    expected = [e.payload["expectedAmountOut"] for e in events if e.status.value == "building"]
    assert expected[0] != expected[1]  # the second attempt priced the moved market
    order = await services.orders.get(order_id)
    assert order.attempts == 2
    assert order.amount_out is not None
    assert order.min_amount_out is not None
    assert order.amount_out >= order.min_amount_out


async def test_a_dlmm_pool_without_enough_bins_fails_the_swap_and_moves_nothing(
    stack: Stack,
) -> None:
    chain = stack.services.chain
    pool = next(p for p in await chain.get_pools(SOL.mint, USDC.mint)
                if p.pool_id.startswith("meteora"))
    before = reserves_of(pool)
    wallet = engine_wallet()
    too_much = before[1] * 10  # ten times all the USDC it holds
    route = RouteInstruction(
        wallet.pubkey(), Pubkey.from_string(USDC.mint), Pubkey.from_string(SOL.mint), 0,
        (RouteStep(0, pool_address(Venue.METEORA, pool.pool_id), False, too_much),),
    )
    latest = await chain.get_latest_blockhash()
    signed = sign_transaction(wallet, [route.to_instruction()], latest.blockhash)

    await chain.send_transaction(signed.raw)

    status = await chain.get_signature_status(signed.signature)
    assert status is not None
    assert status.err is not None
    assert status.err.startswith("InsufficientLiquidity")
    after = next(p for p in await chain.get_pools() if p.pool_id == pool.pool_id)
    assert reserves_of(after) == before


def test_insufficient_liquidity_is_permanent_and_slippage_is_not() -> None:
    from order_engine.domain.errors import InsufficientLiquidityError, SlippageExceededError

    assert not isinstance(InsufficientLiquidityError("x"), TransientError)
    assert isinstance(SlippageExceededError("x"), TransientError)


