"""Pool math, in integer base units, rounded the way the on-chain programs round."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction

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


def _fee(pool: PoolState, amount_in: int) -> int:
    """The fee on `amount_in`, rounded the way the pool's program rounds it."""
    raw = amount_in * pool.fee_numerator
    if pool.fee_rounding is FeeRounding.UP:
        return _ceil_div(raw, pool.fee_denominator)
    return raw // pool.fee_denominator


def _settled(reserve_in: int, reserve_out: int, amount_in: int, fee: int,
             amount_out: int) -> SwapResult:
    # The whole input, fee included, stays in the pool.
    return SwapResult(amount_in=amount_in, fee=fee, amount_out=amount_out,
                      new_reserve_in=reserve_in + amount_in,
                      new_reserve_out=reserve_out - amount_out)


def swap_exact_in(pool: PoolState, input_mint: str, amount_in: int) -> SwapResult:
    """Constant-product swap of exactly `amount_in`; the fee stays in the pool.

    For Raydium, raydium-cp-swap's swap_base_input (see the note before `_input_before_fee`).
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    reserve_in, reserve_out = pool.reserves_for(input_mint)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} is empty")
    fee = _fee(pool, amount_in)
    in_after_fee = amount_in - fee
    amount_out = reserve_out * in_after_fee // (reserve_in + in_after_fee)
    if amount_out <= 0:
        raise InsufficientLiquidityError(
            f"pool {pool.pool_id}: amount too small to receive any output"
        )
    if amount_out >= reserve_out:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} cannot fill this amount")
    return _settled(reserve_in, reserve_out, amount_in, fee, amount_out)


def apply_swap(pool: PoolState, input_mint: str, result: SwapResult) -> PoolState:
    """The pool after `result` (a swap computed on this very state)."""
    if input_mint == pool.mint_a:
        return replace(pool, reserve_a=result.new_reserve_in, reserve_b=result.new_reserve_out)
    return replace(pool, reserve_b=result.new_reserve_in, reserve_a=result.new_reserve_out)


# --- Raydium fee tiers --------------------------------------------------------------------

# AMM v4 takes 25 / 10_000 (0.25%) on every pool.
RAYDIUM_AMM_V4_FEE_NUMERATOR = 25
RAYDIUM_AMM_V4_FEE_DENOMINATOR = 10_000
# CP-Swap (CPMM) fee rates are per 1_000_000 (raydium-cp-swap curve/fees.rs
# FEE_RATE_DENOMINATOR_VALUE); each AmmConfig account sets one trade_fee_rate.
RAYDIUM_CPMM_FEE_DENOMINATOR = 1_000_000
RAYDIUM_CPMM_FEE_0_01_PCT = 100
RAYDIUM_CPMM_FEE_0_25_PCT = 2_500
RAYDIUM_CPMM_FEE_1_PCT = 10_000
RAYDIUM_CPMM_FEE_2_PCT = 20_000
RAYDIUM_CPMM_FEE_4_PCT = 40_000
RAYDIUM_CPMM_FEE_TIERS: tuple[int, ...] = (
    RAYDIUM_CPMM_FEE_0_01_PCT,
    RAYDIUM_CPMM_FEE_0_25_PCT,
    RAYDIUM_CPMM_FEE_1_PCT,
    RAYDIUM_CPMM_FEE_2_PCT,
    RAYDIUM_CPMM_FEE_4_PCT,
)


# --- exact output, prices ---------------------------------------------------------------

# Raydium CP-Swap, as read at raydium-io/raydium-cp-swap@609780f165d234a0aa9699cac90178a3fa36fd43
# (programs/cp-swap/src/...):
#   curve/calculator.rs CurveCalculator::swap_base_input: trade_fee = Fees::trading_fee =
#     ceil(amount * rate / 1e6) (curve/fees.rs ceil_div), net = amount - trade_fee, then
#     constant_product.rs swap_base_input_without_fees: out = floor(net * R_out / (R_in + net));
#     instructions/swap_base_input.rs rejects an output of 0 (require_gt!(amount_received, 0)).
#   curve/calculator.rs CurveCalculator::swap_base_output: net = constant_product.rs
#     swap_base_output_without_fees = (R_in * out).checked_ceil_div(R_out - out), a plain
#     ceiling (utils/math.rs CheckedCeilDiv: quotient + 1 on any remainder); then
#     amount = Fees::calculate_pre_fee_amount(net, rate) = ceil(net * 1e6 / (1e6 - rate))
#     (net itself for rate 0) and trade_fee = amount - net (= ceil(amount * rate / 1e6)).
#   Before b0b2a08 ("Feat: support creator fee (#55)") checked_ceil_div gave 0 for a quotient
#   under one half, and the instruction refused that zero input; the plain ceiling is never 0
#   (R_in * out >= 1), so however small the output, it costs at least 1 unit of net input.
# Not modelled: the creator fee (on input it adds its rate to the trade fee rate; on output it
# grosses up `out`), and protocol/fund fees, which the program keeps out of the reserves.


def _input_before_fee(reserve_in: int, reserve_out: int, amount_out: int) -> int:
    """The input (after fee) that pays out `amount_out`: ceil(R_in * out / (R_out - out)).

    The least net input n with floor(n * R_out / (R_in + n)) >= out, and what raydium-cp-swap's
    swap_base_output_without_fees charges (a plain ceiling; see the note above). It is at
    least 1, however small the quotient.
    """
    return _ceil_div(reserve_in * amount_out, reserve_out - amount_out)


def swap_exact_out(pool: PoolState, output_mint: str, amount_out: int) -> SwapResult:
    """The least input that pays out exactly `amount_out`, the fee on top (a quote).

    Raydium's swap_base_output (see the note above): net input = ceil(R_in * out / (R_out -
    out)), then the amount before fee = ceil(net * D / (D - N)) (fees.rs
    calculate_pre_fee_amount) and the fee = amount - net = ceil(amount * N / D), the same fee
    `swap_exact_in` takes on that amount. For a pool that floors its fee (Meteora), the least
    amount with amount - floor(amount * N / D) >= net is floor((net - 1) * D / (D - N)) + 1.
    Either way `swap_exact_in` of the returned amount_in pays out at least `amount_out`, and
    one base unit less would not. Any output below the reserve gets a quote: the net input is
    at least 1, never refused as too small.
    """
    if amount_out <= 0:
        raise ValueError("amount_out must be positive")
    reserve_out, reserve_in = pool.reserves_for(output_mint)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} is empty")
    if amount_out >= reserve_out:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} cannot pay out {amount_out}")
    if pool.fee_numerator >= pool.fee_denominator:
        raise ValueError(f"pool {pool.pool_id} takes its whole input as fee")
    net_in = _input_before_fee(reserve_in, reserve_out, amount_out)
    numerator, denominator = pool.fee_numerator, pool.fee_denominator
    if pool.fee_rounding is FeeRounding.UP:
        amount_in = _ceil_div(net_in * denominator, denominator - numerator)
    else:
        amount_in = (net_in - 1) * denominator // (denominator - numerator) + 1
    return _settled(reserve_in, reserve_out, amount_in, _fee(pool, amount_in), amount_out)


def spot_price(pool: PoolState, input_mint: str) -> Fraction:
    """Output per unit of input for an infinitesimal swap, before fees: R_out / R_in."""
    reserve_in, reserve_out = pool.reserves_for(input_mint)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} is empty")
    return Fraction(reserve_out, reserve_in)


def marginal_output_rate(pool: PoolState, input_mint: str, amount_in: int) -> Fraction:
    """d(output)/d(input) of the constant-product swap after fee, at `amount_in`:
    gamma * R_in * R_out / (R_in + gamma * a)^2, gamma = 1 - fee (rounding ignored)."""
    if amount_in < 0:
        raise ValueError("amount_in must not be negative")
    reserve_in, reserve_out = pool.reserves_for(input_mint)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidityError(f"pool {pool.pool_id} is empty")
    gamma = 1 - Fraction(pool.fee_numerator, pool.fee_denominator)
    return gamma * reserve_in * reserve_out / (reserve_in + gamma * amount_in) ** 2
