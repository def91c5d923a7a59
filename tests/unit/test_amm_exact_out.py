"""Constant-product exact-output quotes and marginal prices, rounded as the programs round."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from order_engine.domain.amm import (
    RAYDIUM_AMM_V4_FEE_DENOMINATOR,
    RAYDIUM_AMM_V4_FEE_NUMERATOR,
    RAYDIUM_CPMM_FEE_0_25_PCT,
    RAYDIUM_CPMM_FEE_DENOMINATOR,
    RAYDIUM_CPMM_FEE_TIERS,
    FeeRounding,
    PoolState,
    SwapResult,
    marginal_output_rate,
    spot_price,
    swap_exact_in,
    swap_exact_out,
)
from order_engine.domain.errors import InsufficientLiquidityError, InvalidPairError
from order_engine.domain.tokens import SOL, USDC
from tests.unit.test_amm import make_pool as amm_pool

A, B = SOL.mint, USDC.mint


def make_pool(
    reserve_a: int = 1_000_000,
    reserve_b: int = 2_000_000,
    fee: tuple[int, int] = (RAYDIUM_CPMM_FEE_0_25_PCT, RAYDIUM_CPMM_FEE_DENOMINATOR),
    rounding: FeeRounding = FeeRounding.UP,
) -> PoolState:
    # The exact-in tests' pool, with a Raydium CPMM fee tier by default.
    return amm_pool(reserve_a, reserve_b, fee, rounding)


@st.composite
def fees(draw: st.DrawFn) -> tuple[int, int]:
    if draw(st.booleans()):
        tiers = [*RAYDIUM_CPMM_FEE_TIERS, 0]
        return draw(st.sampled_from(tiers)), RAYDIUM_CPMM_FEE_DENOMINATOR
    denominator = draw(st.sampled_from([100, 10_000, 1_000_000]))
    return draw(st.integers(min_value=0, max_value=denominator // 10)), denominator


@st.composite
def pools(draw: st.DrawFn) -> PoolState:
    return make_pool(
        reserve_a=draw(st.integers(min_value=1, max_value=10**18)),
        reserve_b=draw(st.integers(min_value=1, max_value=10**18)),
        fee=draw(fees()),
        rounding=draw(st.sampled_from(FeeRounding)),
    )


def _output_or_zero(pool: PoolState, mint: str, amount_in: int) -> int:
    """What `amount_in` buys; 0 where the swap is refused for paying out nothing."""
    if amount_in <= 0:
        return 0
    try:
        return swap_exact_in(pool, mint, amount_in).amount_out
    except InsufficientLiquidityError:
        return 0


# --- hand-computed references --------------------------------------------------------------

@pytest.mark.parametrize(
    ("fee", "rounding", "amount_in", "fee_paid"),
    [
        # 10_000 B out of reserves 1_000_000 A / 2_000_000 B. Before the fee, the program needs
        #   ceil(1_000_000 * 10_000 / 1_990_000) = ceil(5_025.13) = 5_026 A
        #   (1_990_000 * 5_025 = 9_999_750_000, remainder 250_000).
        # Raydium CPMM 0.25% (2_500 / 1e6), fee rounded up:
        #   amount = ceil(5_026 * 1e6 / 997_500) = ceil(5_038.60) = 5_039,
        #   fee = ceil(5_039 * 0.0025) = ceil(12.5975) = 13, and 5_039 - 13 = 5_026.
        ((2_500, 1_000_000), FeeRounding.UP, 5_039, 13),
        # A floored 25 / 10_000 fee (Meteora): the least amount with amount - fee >= 5_026 is
        #   floor(5_025 * 10_000 / 9_975) + 1 = 5_037 + 1 = 5_038, fee floor(12.595) = 12.
        ((25, 10_000), FeeRounding.DOWN, 5_038, 12),
    ],
)
def test_reference_exact_out(
    fee: tuple[int, int], rounding: FeeRounding, amount_in: int, fee_paid: int
) -> None:
    pool = make_pool(fee=fee, rounding=rounding)
    result = swap_exact_out(pool, B, 10_000)
    assert result == SwapResult(
        amount_in=amount_in,
        fee=fee_paid,
        amount_out=10_000,
        new_reserve_in=1_000_000 + amount_in,
        new_reserve_out=2_000_000 - 10_000,
    )
    # 5_026 A after fee buys floor(2e6 * 5_026 / 1_005_026) = 10_001 B; one unit less
    # leaves 5_025 after fee, which buys floor(10_050_000_000 / 1_005_025) = 9_999.
    assert swap_exact_in(pool, A, amount_in).amount_out == 10_001
    assert swap_exact_in(pool, A, amount_in - 1).amount_out == 9_999


# --- tiny outputs: the program's plain ceiling -----------------------------------------------
# raydium-io/raydium-cp-swap@609780f (programs/cp-swap/src/curve/constant_product.rs
# swap_base_output_without_fees, utils/math.rs checked_ceil_div): the net input is the plain
# ceiling of R_in * out / (R_out - out). Before b0b2a08 (the creator-fee change) a quotient
# under one half rounded to 0 and the swap was refused; these cases were all refused then.

@pytest.mark.parametrize(
    ("reserve_a", "reserve_b", "fee", "amount_out", "amount_in", "fee_paid"),
    [
        # 1 B out of 1 A / 1_000_000 B: net = ceil(1 / 999_999) = 1, no fee.
        (1, 1_000_000, (0, 1), 1, 1, 0),
        # 1 B out of 1 A / 4 B: net = ceil(1 / 3) = 1 (1 / 3 is under one half).
        (1, 4, (0, 1), 1, 1, 0),
        # 1 B out of 1_000_000 A / 3_000_000 B: net = ceil(1_000_000 / 2_999_999) = 1; at 0.25%
        #   calculate_pre_fee_amount: ceil(1 * 1e6 / 997_500) = ceil(1.0025) = 2,
        #   trade_fee = 2 - 1 = 1 (= ceil(2 * 2_500 / 1e6)).
        (1_000_000, 3_000_000, (2_500, 1_000_000), 1, 2, 1),
        # The same at 0.01% and at 4%: ceil(1e6 / 999_900) = ceil(1e6 / 960_000) = 2.
        (1_000_000, 3_000_000, (100, 1_000_000), 1, 2, 1),
        (1_000_000, 3_000_000, (40_000, 1_000_000), 1, 2, 1),
        # 1_000 B out of 10 A / 1_000_000 B: net = ceil(10_000 / 999_000) = 1; at 1%
        #   ceil(1e6 / 990_000) = 2, fee 1.
        (10, 1_000_000, (10_000, 1_000_000), 1_000, 2, 1),
    ],
)
def test_a_quotient_under_one_half_costs_one_unit_of_net_input(
    reserve_a: int, reserve_b: int, fee: tuple[int, int], amount_out: int, amount_in: int,
    fee_paid: int,
) -> None:
    pool = make_pool(reserve_a=reserve_a, reserve_b=reserve_b, fee=fee)
    assert 2 * reserve_a * amount_out < reserve_b - amount_out  # the old program refused it
    assert swap_exact_out(pool, B, amount_out) == SwapResult(
        amount_in=amount_in,
        fee=fee_paid,
        amount_out=amount_out,
        new_reserve_in=reserve_a + amount_in,
        new_reserve_out=reserve_b - amount_out,
    )
    # The charged input, swapped exact-in (net 1 after the fee), pays out at least as much.
    assert swap_exact_in(pool, A, amount_in).amount_out >= amount_out


def test_a_quotient_of_one_half_or_more_rounds_up_as_before() -> None:
    # 1 B out of 1 A / 3 B needs 1 / 2 A: 1 under both the old and the current program.
    assert swap_exact_out(make_pool(reserve_a=1, reserve_b=3, fee=(0, 1)), B, 1).amount_in == 1
    # 1 B out of 2 A / 3 B needs 2 / 2 = 1 A exactly: no rounding, 1.
    assert swap_exact_out(make_pool(reserve_a=2, reserve_b=3, fee=(0, 1)), B, 1).amount_in == 1


# --- properties ----------------------------------------------------------------------------

@given(pool=pools(), output_mint=st.sampled_from([A, B]), data=st.data())
def test_the_quoted_input_is_enough_and_one_unit_less_is_not(
    pool: PoolState, output_mint: str, data: st.DataObject
) -> None:
    reserve_out, reserve_in = pool.reserves_for(output_mint)
    assume(reserve_out >= 2)
    amount_out = data.draw(st.integers(min_value=1, max_value=reserve_out - 1))
    input_mint = B if output_mint == A else A
    # Never refused: the program's net input is a plain ceiling, at least 1.
    quote = swap_exact_out(pool, output_mint, amount_out)
    net_in = math.ceil(Fraction(reserve_in * amount_out, reserve_out - amount_out))
    assert quote.amount_in - quote.fee == net_in >= 1
    bought = swap_exact_in(pool, input_mint, quote.amount_in)
    assert bought.amount_out >= amount_out
    assert bought.fee == quote.fee
    assert (quote.new_reserve_in, quote.new_reserve_out) == (
        reserve_in + quote.amount_in, reserve_out - amount_out)
    assert _output_or_zero(pool, input_mint, quote.amount_in - 1) < amount_out


@given(
    reserve_in=st.integers(min_value=1, max_value=10**12),
    ratio=st.integers(min_value=3, max_value=10**6),
    fee=fees(),
    rounding=st.sampled_from(FeeRounding),
    data=st.data(),
)
def test_a_tiny_output_costs_one_unit_after_fee_and_that_input_pays_it(
    reserve_in: int, ratio: int, fee: tuple[int, int], rounding: FeeRounding,
    data: st.DataObject,
) -> None:
    # Outputs whose needed net input is under one half (refused before b0b2a08).
    reserve_out = reserve_in * ratio
    limit = (reserve_out - 1) // (2 * reserve_in + 1)  # 2 * R_in * out < R_out - out
    assume(limit >= 1)
    amount_out = data.draw(st.integers(min_value=1, max_value=limit))
    pool = make_pool(reserve_a=reserve_in, reserve_b=reserve_out, fee=fee, rounding=rounding)
    quote = swap_exact_out(pool, B, amount_out)
    assert quote.amount_in - quote.fee == 1
    if rounding is FeeRounding.UP:
        # calculate_pre_fee_amount(1, rate): 1 without a fee, else ceil(D / (D - N)) = 2.
        assert quote.amount_in == (2 if fee[0] else 1)
    assert swap_exact_in(pool, A, quote.amount_in).amount_out >= amount_out


@given(pool=pools(), output_mint=st.sampled_from([A, B]), data=st.data())
def test_a_larger_output_never_costs_less(
    pool: PoolState, output_mint: str, data: st.DataObject
) -> None:
    reserve_out, _ = pool.reserves_for(output_mint)
    assume(reserve_out >= 3)
    smaller = data.draw(st.integers(min_value=1, max_value=reserve_out - 2))
    larger = data.draw(st.integers(min_value=smaller + 1, max_value=reserve_out - 1))
    assert (swap_exact_out(pool, output_mint, smaller).amount_in
            <= swap_exact_out(pool, output_mint, larger).amount_in)


@given(pool=pools(), mint=st.sampled_from([A, B]))
def test_marginal_rate_at_zero_is_the_spot_price_less_the_fee(pool: PoolState, mint: str) -> None:
    reserve_in, reserve_out = pool.reserves_for(mint)
    gamma = 1 - Fraction(pool.fee_numerator, pool.fee_denominator)
    assert spot_price(pool, mint) == Fraction(reserve_out, reserve_in)
    assert marginal_output_rate(pool, mint, 0) == gamma * spot_price(pool, mint)


@given(
    reserve_in=st.integers(min_value=10**15, max_value=10**18),
    price_exponent=st.integers(min_value=-3, max_value=3),
    fee=fees(),
    rounding=st.sampled_from(FeeRounding),
    position=st.fractions(min_value=0, max_value=1, max_denominator=10**6),
)
def test_marginal_rate_is_the_slope_of_the_exact_swap(
    reserve_in: int, price_exponent: int, fee: tuple[int, int], rounding: FeeRounding,
    position: Fraction,
) -> None:
    reserve_out = max(reserve_in * 10 ** (price_exponent + 3) // 10**3, 10**12)
    pool = make_pool(reserve_a=reserve_in, reserve_b=reserve_out, fee=fee,
                     rounding=rounding)
    # A step of a millionth of the reserve: large enough that integer rounding (a unit or
    # two) is negligible, small enough that the central difference is exact to ~1e-12.
    step = reserve_in // 10**6
    amount = step + int(position * reserve_in)
    slope = Fraction(
        _output_or_zero(pool, A, amount + step) - _output_or_zero(pool, A, amount - step),
        2 * step,
    )
    rate = marginal_output_rate(pool, A, amount)
    assert abs(slope - rate) <= rate / 10**5


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("amount_out", [2_000_000, 2_000_001])
def test_the_whole_reserve_or_more_is_insufficient_liquidity(amount_out: int) -> None:
    with pytest.raises(InsufficientLiquidityError):
        swap_exact_out(make_pool(), B, amount_out)


@pytest.mark.parametrize("amount_out", [0, -5])
def test_a_non_positive_output_is_rejected(amount_out: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        swap_exact_out(make_pool(), B, amount_out)


@pytest.mark.parametrize(
    "call",
    [
        lambda pool: swap_exact_out(pool, "Unknown", 10),
        lambda pool: spot_price(pool, "Unknown"),
        lambda pool: marginal_output_rate(pool, "Unknown", 10),
    ],
)
def test_a_foreign_mint_is_an_invalid_pair(call: Callable[[PoolState], object]) -> None:
    with pytest.raises(InvalidPairError):
        call(make_pool())


def test_fee_tiers_are_fractions_of_the_denominators() -> None:
    assert RAYDIUM_AMM_V4_FEE_NUMERATOR / RAYDIUM_AMM_V4_FEE_DENOMINATOR == 0.0025
    assert RAYDIUM_CPMM_FEE_0_25_PCT / RAYDIUM_CPMM_FEE_DENOMINATOR == 0.0025
    assert list(RAYDIUM_CPMM_FEE_TIERS) == sorted(set(RAYDIUM_CPMM_FEE_TIERS))
    assert all(0 < tier < RAYDIUM_CPMM_FEE_DENOMINATOR for tier in RAYDIUM_CPMM_FEE_TIERS)
