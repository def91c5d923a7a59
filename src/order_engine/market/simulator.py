"""A market that moves: reference prices walk, noise traders trade, arbitrageurs close gaps.

Every trade is a real transaction on the simulated chain, signed by the market's own
wallet, so it competes with the engine's orders for the same pools: quotes go stale,
prices move between quote and execution, and slippage protection has work to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from dataclasses import dataclass
from fractions import Fraction

import structlog
from solders.pubkey import Pubkey

from order_engine.domain.errors import ExecutionError, InsufficientLiquidityError
from order_engine.market.chain import SimulatedChain
from order_engine.market.config import MarketConfig, PairConfig
from order_engine.market.pool_codec import (
    AnyPool,
    fee_fraction,
    mints_of,
    reserves_of,
    spot_price,
    swap,
    venue_of,
)
from order_engine.market.programs import (
    RouteInstruction,
    RouteStep,
    memo_instruction,
    pool_address,
)
from order_engine.market.transactions import engine_wallet, sign_transaction
from order_engine.store.db import DATABASE_ERRORS

log = structlog.get_logger(__name__)

SEARCH_STEPS = 48
TICK_ERRORS: tuple[type[Exception], ...] = (OSError, ExecutionError, *DATABASE_ERRORS)


@dataclass(frozen=True, slots=True)
class Trade:
    pool: AnyPool
    input_mint: str
    amount_in: int
    reason: str  # "noise" or "arbitrage"


def _reference_in_base_units(pair: PairConfig, price: float) -> Fraction:
    """Quote base units per base base unit, for a price in token units."""
    return Fraction(price) * Fraction(10**pair.quote.decimals, 10**pair.base.decimals)


def arbitrage_trade(pool: AnyPool, target: Fraction, threshold: Fraction, now_ts: int) -> (
    Trade | None
):
    """The trade that brings the pool's price (quote per base) back to `target`, if it is
    further off than `threshold` (a fraction, fees included by the caller)."""
    base, quote = mints_of(pool)
    spot = _price(pool)
    if spot is None:
        return None
    if spot > target * (1 + threshold):
        sell = base  # pool pays too much quote for base: sell it base, price falls
    elif spot < target * (1 - threshold):
        sell = quote
    else:
        return None
    reserve = reserves_of(pool)[0 if sell == base else 1]

    def crossed(amount: int) -> bool:
        try:
            _, after = swap(pool, sell, amount, now_ts)
        except InsufficientLiquidityError:
            return True
        price = _price(after)
        if price is None:
            return True
        return price <= target if sell == base else price >= target

    low, high = 0, max(1, reserve // 2)
    if not crossed(high):
        return Trade(pool, sell, high, "arbitrage")
    for _ in range(SEARCH_STEPS):
        middle = (low + high) // 2
        if middle in (low, high):
            break
        if crossed(middle):
            high = middle
        else:
            low = middle
    return Trade(pool, sell, low, "arbitrage") if low > 0 else None


def _price(pool: AnyPool) -> Fraction | None:
    """Quote per base at the margin. A DLMM pool pushed past its bins holds no quote to
    pay out for base: its price is then read from the other side. None if it holds
    neither (it cannot trade at all)."""
    base, quote = mints_of(pool)
    try:
        return spot_price(pool, base)
    except InsufficientLiquidityError:
        pass
    try:
        return 1 / spot_price(pool, quote)
    except InsufficientLiquidityError:
        return None


class MarketSimulator:
    def __init__(self, chain: SimulatedChain, config: MarketConfig,
                 rng: random.Random | None = None) -> None:
        self._chain = chain
        self._config = config
        self._rng = rng or random.Random(config.seed)
        self._wallet = engine_wallet("order-engine-simulated-market-maker")
        self.reference: dict[tuple[str, str], float] = {
            (p.base.mint, p.quote.mint): float(p.price) for p in config.pairs
        }
        self.trades_sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        log.info("market simulator running", tick_seconds=self._config.tick_seconds,
                 seed=self._config.seed)
        while not stop.is_set():
            try:
                await self.tick(self._config.tick_seconds)
            except TICK_ERRORS as exc:  # the next tick tries again
                log.warning("market tick failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.tick_seconds)

    def walk_prices(self, seconds: float) -> None:
        for pair in self._config.pairs:
            key = (pair.base.mint, pair.quote.mint)
            shock = self._rng.gauss(0.0, pair.volatility * math.sqrt(seconds))
            self.reference[key] *= math.exp(shock)

    def trades_for(self, pools: list[AnyPool], now_ts: int) -> list[Trade]:
        trades = []
        pairs = {(p.base.mint, p.quote.mint): p for p in self._config.pairs}
        threshold_extra = Fraction(self._config.arbitrage_threshold_bps, 10_000)
        for pool in pools:
            pair = pairs.get(mints_of(pool))
            if pair is None:
                continue
            for _ in range(self._poisson(self._config.noise_trades_per_pool_per_tick)):
                sell = self._rng.choice(mints_of(pool))
                side = reserves_of(pool)[mints_of(pool).index(sell)]
                size = self._rng.uniform(self._config.noise_min_size_pct,
                                         self._config.noise_max_size_pct) / 100
                amount = int(side * size)
                if amount > 0:
                    trades.append(Trade(pool, sell, amount, "noise"))
            target = _reference_in_base_units(pair, self.reference[mints_of(pool)])
            fee = fee_fraction(pool)
            trade = arbitrage_trade(pool, target, fee + threshold_extra, now_ts)
            if trade is not None:
                trades.append(trade)
        return trades

    async def tick(self, seconds: float) -> int:
        self.walk_prices(seconds)
        pools = await self._chain.get_pools()
        now_ts = int(time.time())
        sent = 0
        for trade in self.trades_for(pools, now_ts):
            if await self._send(trade):
                sent += 1
        self.trades_sent += sent
        return sent

    async def _send(self, trade: Trade) -> bool:
        base, quote = mints_of(trade.pool)
        buy = quote if trade.input_mint == base else base
        instruction = RouteInstruction(
            owner=self._wallet.pubkey(),
            input_mint=Pubkey.from_string(trade.input_mint),
            output_mint=Pubkey.from_string(buy),
            min_amount_out=0,
            steps=(RouteStep(0, pool_address(venue_of(trade.pool), trade.pool.pool_id),
                             trade.input_mint == base, trade.amount_in),),
        ).to_instruction()
        latest = await self._chain.get_latest_blockhash()
        memo = memo_instruction(f"market:{trade.reason}:{self._rng.getrandbits(32)}",
                                self._wallet.pubkey())
        signed = sign_transaction(self._wallet, [memo, instruction], latest.blockhash)
        try:
            await self._chain.send_transaction(signed.raw)
        except ExecutionError:
            return False
        return True

    def _poisson(self, mean: float) -> int:
        # Knuth's method: fine for the small means of a tick.
        limit, k, product = math.exp(-mean), 0, self._rng.random()
        while product > limit:
            k += 1
            product *= self._rng.random()
        return k
