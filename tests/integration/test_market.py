"""The market simulator: prices walk, noise trades, arbitrage pulls pools back together."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from fractions import Fraction

from order_engine.domain.dlmm import DlmmPool
from order_engine.market.chain import SimulatedChain
from order_engine.market.config import load_market_config
from order_engine.market.pool_codec import fee_fraction, mints_of, spot_price
from order_engine.market.simulator import MarketSimulator, arbitrage_trade
from tests.chain_audit import reserve_mismatches
from tests.stack import Stack


async def test_arbitrage_brings_every_pool_close_to_the_reference(stack: Stack) -> None:
    config = dataclasses.replace(load_market_config(), noise_trades_per_pool_per_tick=0.0)
    chain = SimulatedChain(stack.services.engine, stack.services.pg, latency_scale=0)
    market = MarketSimulator(chain, config, random.Random(3))
    # Prices jump 2% (the stablecoin pair 0.3%, inside its pools' liquidity ranges).
    market.reference = {k: v * (1.003 if v < 1.5 and v > 0.5 else 1.02)
                        for k, v in market.reference.items()}

    for _ in range(3):
        await market.tick(0.0)

    for pool in await chain.get_pools():
        pair = next(p for p in config.pairs if (p.base.mint, p.quote.mint) == mints_of(pool))
        target = Fraction(market.reference[mints_of(pool)]) * Fraction(
            10**pair.quote.decimals, 10**pair.base.decimals)
        spot = spot_price(pool, mints_of(pool)[0])
        fee = fee_fraction(pool)
        # Within the pool's fee plus the threshold (and a bin's width for DLMM pools).
        assert abs(spot / target - 1) <= fee + Fraction(config.arbitrage_threshold_bps,
                                                        10_000) + Fraction(1, 100), pool.pool_id
    assert market.trades_sent > 0
    assert await reserve_mismatches(stack.services.engine) == []


async def test_noise_and_walks_are_reproducible_with_a_seed(stack: Stack) -> None:
    config = load_market_config()
    pools = await stack.services.chain.get_pools()

    def plan(seed: int) -> list[tuple[str, str, int, str]]:
        market = MarketSimulator(stack.services.chain, config, random.Random(seed))
        market.walk_prices(1.0)
        return [(t.pool.pool_id, t.input_mint, t.amount_in, t.reason)
                for t in market.trades_for(pools, 0)]

    assert plan(5) == plan(5)
    assert plan(5) != plan(6)


async def test_no_arbitrage_when_the_pool_is_at_the_reference(stack: Stack) -> None:
    pool = (await stack.services.chain.get_pools())[0]
    base, quote = mints_of(pool)
    target = spot_price(pool, base)
    assert arbitrage_trade(pool, target, Fraction(1, 1000), 0) is None
    far = arbitrage_trade(pool, target * Fraction(11, 10), Fraction(1, 1000), 0)
    assert far is not None
    assert far.input_mint == quote  # buy base to lift the price


async def test_the_ledger_adds_up_at_every_instant_while_the_market_trades(
        stack: Stack) -> None:
    """A pool's reserves and the transaction that moved them are written together: any
    snapshot taken while swaps land shows genesis + swaps = reserves."""
    chain = SimulatedChain(stack.services.engine, stack.services.pg, latency_scale=0)
    market = MarketSimulator(chain, load_market_config(), random.Random(7))
    trading = True

    async def trade() -> None:
        while trading:
            # Small moves, so that arbitrage trades every tick.
            market.reference = {k: v * market_rng.uniform(0.999, 1.001)
                                for k, v in market.reference.items()}
            await market.tick(0.0)

    market_rng = random.Random(8)
    task = asyncio.create_task(trade())
    audits: list[list[str]] = []
    try:
        # At least 30 audits, and on until trades have landed between them (how many land
        # per audit depends on the machine's load, so count trades rather than time).
        while len(audits) < 30 or (market.trades_sent <= 30 and len(audits) < 300):
            audits.append(await reserve_mismatches(stack.services.engine))
    finally:
        trading = False
        await task
    assert market.trades_sent > 30
    assert audits == [[]] * len(audits)


async def test_a_dlmm_pool_pushed_past_its_bins_does_not_stop_the_market(stack: Stack) -> None:
    """When the reference walks beyond a DLMM pool's bins, arbitrage empties one side of
    it. The market must go on trading every pool, and buy that pool back when it can."""
    config = load_market_config()
    pools = await stack.services.chain.get_pools()
    pool = next(p for p in pools if isinstance(p, DlmmPool))
    no_quote = dataclasses.replace(pool, bins=tuple(b._replace(amount_y=0) for b in pool.bins))
    market = MarketSimulator(stack.services.chain, config, random.Random(1))
    key = mints_of(pool)
    pair = next(p for p in config.pairs if (p.base.mint, p.quote.mint) == key)
    price = 1 / spot_price(no_quote, pool.mint_y)  # quote per base, from the base side
    reference = float(price) * 10**pair.base.decimals / 10**pair.quote.decimals

    market.reference[key] = reference * 1.05  # above the pool: buy its base with quote
    trades = market.trades_for([p if p is not pool else no_quote for p in pools], 0)
    bought = [t for t in trades if t.pool is no_quote and t.reason == "arbitrage"]
    assert [t.input_mint for t in bought] == [pool.mint_y]
    assert {t.pool.pool_id for t in trades if t.pool is not no_quote} != set()

    market.reference[key] = reference * 0.95  # below: it would sell base, but cannot
    trades = market.trades_for([no_quote], 0)
    assert [t for t in trades if t.reason == "arbitrage"] == []
