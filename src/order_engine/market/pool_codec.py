"""The chain's pool rows as domain pools, and back; one call per operation for every kind
of pool (Raydium constant product, Meteora DLMM)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from order_engine.domain import dlmm
from order_engine.domain.amm import FeeRounding, PoolState, Venue, apply_swap, swap_exact_in
from order_engine.domain.pools import ConstantProductPool, DlmmRoutablePool
from order_engine.domain.router import RoutablePool
from order_engine.market.config import CONSTANT_PRODUCT, DLMM

AnyPool = PoolState | dlmm.DlmmPool


def _dlmm_state(pool: dlmm.DlmmPool) -> dict[str, Any]:
    # Amounts as strings: JSON numbers past 2^53 are not safe everywhere.
    p = pool.params
    return {
        "params": {
            "bin_step": p.bin_step, "base_factor": p.base_factor,
            "filter_period": p.filter_period, "decay_period": p.decay_period,
            "reduction_factor": p.reduction_factor,
            "variable_fee_control": p.variable_fee_control,
            "max_volatility_accumulator": p.max_volatility_accumulator,
            "protocol_share": p.protocol_share,
            "base_fee_power_factor": p.base_fee_power_factor,
        },
        "active_id": pool.active_id,
        "bins": [[b.bin_id, str(b.amount_x), str(b.amount_y)] for b in pool.bins],
        "volatility_accumulator": pool.volatility_accumulator,
        "volatility_reference": pool.volatility_reference,
        "index_reference": pool.index_reference,
        "last_update_timestamp": pool.last_update_timestamp,
        "fee_x": str(pool.fee_x), "fee_y": str(pool.fee_y),
        "protocol_fee_x": str(pool.protocol_fee_x), "protocol_fee_y": str(pool.protocol_fee_y),
    }


def _dlmm_from(row: Mapping[Any, Any]) -> dlmm.DlmmPool:
    state = row["state"]
    return dlmm.DlmmPool(
        pool_id=row["pool_id"],
        mint_x=row["mint_a"],
        mint_y=row["mint_b"],
        params=dlmm.DlmmParams(**state["params"]),
        active_id=state["active_id"],
        bins=tuple(dlmm.Bin(b[0], int(b[1]), int(b[2])) for b in state["bins"]),
        volatility_accumulator=state["volatility_accumulator"],
        volatility_reference=state["volatility_reference"],
        index_reference=state["index_reference"],
        last_update_timestamp=state["last_update_timestamp"],
        fee_x=int(state["fee_x"]), fee_y=int(state["fee_y"]),
        protocol_fee_x=int(state["protocol_fee_x"]), protocol_fee_y=int(state["protocol_fee_y"]),
    )


def pool_from_row(row: Mapping[Any, Any]) -> AnyPool:
    if row.get("kind") == DLMM:
        return _dlmm_from(row)
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
    a, b = mints_of(pool)
    if isinstance(pool, dlmm.DlmmPool):
        fee = (dlmm.base_fee_rate(pool.params), dlmm.FEE_PRECISION, FeeRounding.UP)
    else:
        fee = (pool.fee_numerator, pool.fee_denominator, pool.fee_rounding)
    return {
        "pool_id": pool.pool_id,
        "venue": venue_of(pool).value,
        "mint_a": a,
        "mint_b": b,
        # For a DLMM pool: its base fee (the variable part lives in its state).
        "fee_numerator": fee[0],
        "fee_denominator": fee[1],
        "fee_rounding": fee[2].value,
        "kind": DLMM if isinstance(pool, dlmm.DlmmPool) else CONSTANT_PRODUCT,
        **pool_values(pool),
    }


def pool_values(pool: AnyPool) -> dict[str, Any]:
    """The columns a swap changes: everything the pool holds, and a DLMM pool's state."""
    reserve_a, reserve_b = reserves_of(pool)
    values: dict[str, Any] = {"reserve_a": Decimal(reserve_a), "reserve_b": Decimal(reserve_b)}
    if isinstance(pool, dlmm.DlmmPool):
        values["state"] = _dlmm_state(pool)
    return values


def swap(pool: AnyPool, input_mint: str, amount_in: int, now_ts: int) -> tuple[int, AnyPool]:
    """(amount out, the pool after); raises InsufficientLiquidityError / InvalidPairError."""
    if isinstance(pool, dlmm.DlmmPool):
        result = dlmm.swap_exact_in(pool, input_mint, amount_in, now_ts)
        return result.amount_out, result.new_pool
    cp = swap_exact_in(pool, input_mint, amount_in)
    return cp.amount_out, apply_swap(pool, input_mint, cp)


def routable(pool: AnyPool, now_ts: int) -> RoutablePool:
    if isinstance(pool, dlmm.DlmmPool):
        return DlmmRoutablePool(pool, now_ts)
    return ConstantProductPool(pool)


def venue_of(pool: AnyPool) -> Venue:
    return Venue.METEORA if isinstance(pool, dlmm.DlmmPool) else pool.venue


def mints_of(pool: AnyPool) -> tuple[str, str]:
    if isinstance(pool, dlmm.DlmmPool):
        return pool.mint_x, pool.mint_y
    return pool.mint_a, pool.mint_b


def reserves_of(pool: AnyPool) -> tuple[int, int]:
    """All of token A and token B the pool holds (a DLMM pool's accrued fees included)."""
    if isinstance(pool, dlmm.DlmmPool):
        return pool.reserve_x, pool.reserve_y
    return pool.reserve_a, pool.reserve_b


def spot_price(pool: AnyPool, input_mint: str) -> Fraction:
    """Output base units per input base unit at the margin, before fees."""
    if isinstance(pool, dlmm.DlmmPool):
        return dlmm.spot_price(pool, input_mint)
    reserve_in, reserve_out = pool.reserves_for(input_mint)
    return Fraction(reserve_out, reserve_in)


def fee_fraction(pool: AnyPool) -> Fraction:
    """The pool's (base) fee as a fraction of the input."""
    if isinstance(pool, dlmm.DlmmPool):
        return Fraction(dlmm.base_fee_rate(pool.params), dlmm.FEE_PRECISION)
    return Fraction(pool.fee_numerator, pool.fee_denominator)
