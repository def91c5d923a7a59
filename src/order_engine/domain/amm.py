"""Pool math, in integer base units, rounded the way the on-chain programs round."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from order_engine.domain.errors import InsufficientLiquidityError, InvalidPairError


class Venue(StrEnum):
    RAYDIUM = "raydium"
    METEORA = "meteora"


class FeeRounding(StrEnum):
    # Raydium AMM v4 takes its fee rounded up (the pool never loses a fraction).
    UP = "up"
    # Meteora's dynamic AMM floors the fee.
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class PoolState:
    pool_id: str
    venue: Venue
    mint_a: str
    mint_b: str
    reserve_a: int
    reserve_b: int
    fee_numerator: int
    fee_denominator: int
    fee_rounding: FeeRounding

    def has_mint(self, mint: str) -> bool:
        return mint in (self.mint_a, self.mint_b)

    def reserves_for(self, input_mint: str) -> tuple[int, int]:
        """(reserve of the input token, reserve of the output token)."""
        if input_mint == self.mint_a:
            return self.reserve_a, self.reserve_b
        if input_mint == self.mint_b:
            return self.reserve_b, self.reserve_a
        raise InvalidPairError(f"pool {self.pool_id} does not hold {input_mint}")

    @property
    def fee_fraction_text(self) -> str:
        return f"{self.fee_numerator}/{self.fee_denominator}"


@dataclass(frozen=True, slots=True)
class SwapResult:
    amount_in: int
    fee: int
    amount_out: int
    new_reserve_in: int
    new_reserve_out: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def swap_exact_in(pool: PoolState, input_mint: str, amount_in: int) -> SwapResult:
    """Constant-product swap of exactly `amount_in`; the fee stays in the pool."""
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    reserve_in, reserve_out = pool.reserves_for(input_mint)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} is empty")
    raw_fee = amount_in * pool.fee_numerator
    if pool.fee_rounding is FeeRounding.UP:
        fee = _ceil_div(raw_fee, pool.fee_denominator)
    else:
        fee = raw_fee // pool.fee_denominator
    in_after_fee = amount_in - fee
    amount_out = reserve_out * in_after_fee // (reserve_in + in_after_fee)
    if amount_out <= 0:
        raise InsufficientLiquidityError(
            f"pool {pool.pool_id}: amount too small to receive any output"
        )
    if amount_out >= reserve_out:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} cannot fill this amount")
    return SwapResult(
        amount_in=amount_in,
        fee=fee,
        amount_out=amount_out,
        new_reserve_in=reserve_in + amount_in,
        new_reserve_out=reserve_out - amount_out,
    )


def apply_swap(pool: PoolState, input_mint: str, result: SwapResult) -> PoolState:
    """The pool after `result` (a swap computed on this very state)."""
    if input_mint == pool.mint_a:
        return replace(pool, reserve_a=result.new_reserve_in, reserve_b=result.new_reserve_out)
    return replace(pool, reserve_b=result.new_reserve_in, reserve_a=result.new_reserve_out)
