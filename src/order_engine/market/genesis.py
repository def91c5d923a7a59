"""The pools at genesis, from the market configuration."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from order_engine.domain import dlmm
from order_engine.domain.amm import FeeRounding, PoolState, Venue
from order_engine.market.config import CONSTANT_PRODUCT, MarketConfig, PoolConfig
from order_engine.market.pool_codec import AnyPool

# Raydium's programs round their fee up; Meteora's round down.
FEE_ROUNDING = {Venue.RAYDIUM: FeeRounding.UP, Venue.METEORA: FeeRounding.DOWN}


def _pool_price(config: MarketConfig, pool: PoolConfig) -> Decimal:
    """Quote per base in token units: the pair's price moved by the pool's offset."""
    return config.pair_of(pool).price * (1 + pool.price_offset_pct / 100)


def genesis_pool(config: MarketConfig, pool: PoolConfig, now_ts: int) -> AnyPool:
    price = _pool_price(config, pool)
    reserve_base = int(pool.base_liquidity.scaleb(pool.base.decimals))
    reserve_quote = int((pool.base_liquidity * price).scaleb(pool.quote.decimals))
    if pool.kind == CONSTANT_PRODUCT:
        return PoolState(pool.pool_id, pool.venue, pool.base.mint, pool.quote.mint,
                         reserve_base, reserve_quote, pool.fee_bps, 10_000,
                         FEE_ROUNDING[pool.venue])
    # DLMM: liquidity in bins around the price, in base units of quote per base.
    scale = Fraction(10**pool.quote.decimals, 10**pool.base.decimals)
    return dlmm.make_pool(
        pool.pool_id, pool.base.mint, pool.quote.mint,
        dlmm.DlmmParams(bin_step=pool.bin_step, base_factor=pool.base_factor),
        Fraction(price) * scale, reserve_base, reserve_quote,
        shape=pool.shape, bins_each_side=pool.bins_each_side, now_ts=now_ts,
    )


def genesis_pools(config: MarketConfig, now_ts: int) -> list[AnyPool]:
    return [genesis_pool(config, pool, now_ts) for pool in config.pools]
