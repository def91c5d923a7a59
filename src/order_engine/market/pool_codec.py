"""The chain's pool rows as domain pools, and back; one swap call for every pool kind."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.domain.amm import FeeRounding, PoolState, Venue, apply_swap, swap_exact_in
from order_engine.domain.pools import ConstantProductPool
from order_engine.domain.router import RoutablePool

CONSTANT_PRODUCT = "constant_product"

AnyPool = PoolState


def pool_from_row(row: Mapping[Any, Any]) -> AnyPool:
    return PoolState(
        pool_id=row["pool_id"],
        venue=Venue(row["venue"]),
        mint_a=row["mint_a"],
        mint_b=row["mint_b"],
        reserve_a=int(row["reserve_a"]),
        reserve_b=int(row["reserve_b"]),
        fee_numerator=row["fee_numerator"],
        fee_denominator=row["fee_denominator"],
        fee_rounding=FeeRounding(row["fee_rounding"]),
    )


def pool_row(pool: AnyPool) -> dict[str, Any]:
    """Every column of a new pool row but its address and timestamps."""
    return {
        "pool_id": pool.pool_id,
        "venue": pool.venue.value,
        "mint_a": pool.mint_a,
        "mint_b": pool.mint_b,
        "fee_numerator": pool.fee_numerator,
        "fee_denominator": pool.fee_denominator,
        "fee_rounding": pool.fee_rounding.value,
        "kind": CONSTANT_PRODUCT,
        **pool_values(pool),
    }


def pool_values(pool: AnyPool) -> dict[str, Any]:
    """The columns a swap changes."""
    return {"reserve_a": Decimal(pool.reserve_a), "reserve_b": Decimal(pool.reserve_b)}


def swap(pool: AnyPool, input_mint: str, amount_in: int, now_ts: int) -> tuple[int, AnyPool]:
    """(amount out, the pool after); raises InsufficientLiquidityError / InvalidPairError."""
    result = swap_exact_in(pool, input_mint, amount_in)
    return result.amount_out, apply_swap(pool, input_mint, result)


def routable(pool: AnyPool, now_ts: int) -> RoutablePool:
    return ConstantProductPool(pool)


def mints_of(pool: AnyPool) -> tuple[str, str]:
    return pool.mint_a, pool.mint_b


def reserves_of(pool: AnyPool) -> tuple[int, int]:
    """All of token A and token B the pool holds."""
    return pool.reserve_a, pool.reserve_b


def spot_price(pool: AnyPool, input_mint: str) -> Fraction:
    """Output base units per input base unit at the margin, before fees."""
    reserve_in, reserve_out = pool.reserves_for(input_mint)
    return Fraction(reserve_out, reserve_in)


def fee_fraction(pool: AnyPool) -> Fraction:
    return Fraction(pool.fee_numerator, pool.fee_denominator)
