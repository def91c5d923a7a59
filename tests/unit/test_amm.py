"""Constant-product pool math in integer base units, rounded the way the programs round."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from order_engine.domain.amm import (
    FeeRounding,
    PoolState,
    SwapResult,
    Venue,
    apply_swap,
    swap_exact_in,
)
from order_engine.domain.errors import InsufficientLiquidityError, InvalidPairError
from order_engine.domain.tokens import BONK, SOL, USDC

A, B = SOL.mint, USDC.mint


def make_pool(
    reserve_a: int = 1_000_000,
    reserve_b: int = 2_000_000,
    fee: tuple[int, int] = (25, 10_000),
    rounding: FeeRounding = FeeRounding.UP,
) -> PoolState:
    return PoolState(
        pool_id="pool-1",
        venue=Venue.RAYDIUM if rounding is FeeRounding.UP else Venue.METEORA,
        mint_a=A,
        mint_b=B,
        reserve_a=reserve_a,
        reserve_b=reserve_b,
        fee_numerator=fee[0],
        fee_denominator=fee[1],
        fee_rounding=rounding,
    )


@st.composite
def pools(draw: st.DrawFn) -> PoolState:
    denominator = draw(st.sampled_from([100, 10_000, 1_000_000]))
    return make_pool(
        reserve_a=draw(st.integers(min_value=1, max_value=10**18)),
        reserve_b=draw(st.integers(min_value=1, max_value=10**18)),
        fee=(draw(st.integers(min_value=0, max_value=denominator // 10)), denominator),
        rounding=draw(st.sampled_from(FeeRounding)),
    )


input_mints = st.sampled_from([A, B])
amounts_in = st.integers(min_value=1, max_value=10**18)


def _expected_fee(pool: PoolState, amount_in: int) -> int:
    exact = Fraction(amount_in * pool.fee_numerator, pool.fee_denominator)
    return math.ceil(exact) if pool.fee_rounding is FeeRounding.UP else math.floor(exact)


def _swap_or_none(pool: PoolState, mint: str, amount_in: int) -> SwapResult | None:
    try:
        return swap_exact_in(pool, mint, amount_in)
    except InsufficientLiquidityError:
        return None


# --- hand-computed reference swaps ------------------------------------------------------

@pytest.mark.parametrize(
    ("rounding", "amount_in", "fee", "amount_out"),
    [
        # reserves 1_000_000 / 2_000_000, fee 25/10_000, 10_000 in:
        #   raw fee 10_000 * 25 / 10_000 = 25 exactly, so both modes take 25
        #   in_after_fee = 9_975
        #   out = 2_000_000 * 9_975 // (1_000_000 + 9_975) = 19_950_000_000 // 1_009_975
        #       = 19_752  (1_009_975 * 19_752 = 19_949_026_200, remainder 973_800)
        (FeeRounding.UP, 10_000, 25, 19_752),
        (FeeRounding.DOWN, 10_000, 25, 19_752),
        # 10_001 in: raw fee 10_001 * 25 / 10_000 = 25.0025
        #   UP (Raydium): fee ceil = 26, in_after_fee = 9_975,
        #   out = 19_950_000_000 // 1_009_975 = 19_752 (as above)
        (FeeRounding.UP, 10_001, 26, 19_752),
        #   DOWN (Meteora): fee floor = 25, in_after_fee = 9_976,
        #   out = 2_000_000 * 9_976 // 1_009_976 = 19_952_000_000 // 1_009_976
        #       = 19_754  (1_009_976 * 19_754 = 19_951_065_904, remainder 934_096)
        (FeeRounding.DOWN, 10_001, 25, 19_754),
    ],
)
def test_reference_swap(rounding: FeeRounding, amount_in: int, fee: int, amount_out: int) -> None:
    pool = make_pool(rounding=rounding)
    result = swap_exact_in(pool, A, amount_in)
    assert result == SwapResult(
        amount_in=amount_in,
        fee=fee,
        amount_out=amount_out,
        new_reserve_in=1_000_000 + amount_in,
        new_reserve_out=2_000_000 - amount_out,
    )


def test_reference_swap_in_the_other_direction() -> None:
    # 10_000 of B into reserves 2_000_000 (B) / 1_000_000 (A): fee 25, in_after_fee 9_975,
    # out = 1_000_000 * 9_975 // 2_009_975 = 9_975_000_000 // 2_009_975
    #     = 4_962  (2_009_975 * 4_962 = 9_973_495_950, remainder 1_504_050)
    result = swap_exact_in(make_pool(), B, 10_000)
    assert (result.fee, result.amount_out) == (25, 4_962)
    assert (result.new_reserve_in, result.new_reserve_out) == (2_010_000, 995_038)


@pytest.mark.parametrize(
    ("amount_in", "reserve_in", "reserve_out", "amount_out"),
    [
        # raydium-io/raydium-cp-swap@609780f programs/cp-swap/src/curve/constant_product.rs,
        # test constant_product_swap_rounding (swap_base_input_without_fees, no fee).
        (10, 4_000_000, 70_000_000_000, 174_999),
        (20, 30_000 - 20, 10_000, 6),
        (19, 30_000 - 20, 10_000, 6),
        (18, 30_000 - 20, 10_000, 6),
        (10, 20_000, 30_000, 14),
        (10, 20_000 - 9, 30_000, 14),
        (10, 20_000 - 10, 30_000, 15),
        (100, 60_000, 30_000, 49),
        (99, 60_000, 30_000, 49),
        (98, 60_000, 30_000, 48),
    ],
)
def test_the_cp_swap_programs_own_rounding_cases(
    amount_in: int, reserve_in: int, reserve_out: int, amount_out: int
) -> None:
    pool = make_pool(reserve_a=reserve_in, reserve_b=reserve_out, fee=(0, 1_000_000))
    assert swap_exact_in(pool, A, amount_in).amount_out == amount_out


# --- properties -------------------------------------------------------------------------

@given(pool=pools(), mint=input_mints, amount_in=amounts_in)
def test_fee_is_rounded_as_the_venue_rounds(pool: PoolState, mint: str, amount_in: int) -> None:
    result = _swap_or_none(pool, mint, amount_in)
    assume(result is not None)
    assert result is not None
    assert result.fee == _expected_fee(pool, amount_in)
    assert 0 <= result.fee <= amount_in


@given(pool=pools(), mint=input_mints, amount_in=amounts_in)
def test_up_rounding_never_takes_less_fee_than_down(
    pool: PoolState, mint: str, amount_in: int
) -> None:
    up = _swap_or_none(replace(pool, fee_rounding=FeeRounding.UP), mint, amount_in)
    down = _swap_or_none(replace(pool, fee_rounding=FeeRounding.DOWN), mint, amount_in)
    if up is None:
        return
    assert down is not None
    assert down.fee <= up.fee <= down.fee + 1
    assert up.amount_out <= down.amount_out


@given(pool=pools(), mint=input_mints, amount_in=amounts_in)
def test_output_is_the_most_the_invariant_allows(
    pool: PoolState, mint: str, amount_in: int
) -> None:
    reserve_in, reserve_out = pool.reserves_for(mint)
    in_after_fee = amount_in - _expected_fee(pool, amount_in)
    result = _swap_or_none(pool, mint, amount_in)
    if result is None:
        # Refused only when not even one base unit would come out.
        assert reserve_out * in_after_fee < reserve_in + in_after_fee
        return
    out = result.amount_out
    assert 0 < out < reserve_out
    k = reserve_in * reserve_out
    # The fee-less constant product holds after the swap, and one more unit would break it.
    assert (reserve_in + in_after_fee) * (reserve_out - out) >= k
    assert (reserve_in + in_after_fee) * (reserve_out - out - 1) < k
    assert result.new_reserve_in == reserve_in + amount_in
    assert result.new_reserve_out == reserve_out - out


@given(pool=pools(), mint=input_mints, smaller=amounts_in, larger=amounts_in)
def test_more_in_never_gives_less_out(
    pool: PoolState, mint: str, smaller: int, larger: int
) -> None:
    smaller, larger = sorted((smaller, larger))
    small, large = _swap_or_none(pool, mint, smaller), _swap_or_none(pool, mint, larger)
    if large is None:
        assert small is None
    elif small is not None:
        assert small.amount_out <= large.amount_out


@given(pool=pools(), mint=input_mints, amount_in=amounts_in)
def test_constant_product_never_decreases(pool: PoolState, mint: str, amount_in: int) -> None:
    result = _swap_or_none(pool, mint, amount_in)
    assume(result is not None)
    assert result is not None
    after = apply_swap(pool, mint, result)
    assert after.reserve_a * after.reserve_b >= pool.reserve_a * pool.reserve_b


@given(pool=pools(), mint=input_mints, amount_in=amounts_in)
def test_apply_swap_moves_the_right_reserves(pool: PoolState, mint: str, amount_in: int) -> None:
    result = _swap_or_none(pool, mint, amount_in)
    assume(result is not None)
    assert result is not None
    after = apply_swap(pool, mint, result)
    in_delta, out_delta = amount_in, -result.amount_out
    if mint == pool.mint_a:
        expected = (pool.reserve_a + in_delta, pool.reserve_b + out_delta)
    else:
        expected = (pool.reserve_a + out_delta, pool.reserve_b + in_delta)
    assert (after.reserve_a, after.reserve_b) == expected
    assert replace(after, reserve_a=pool.reserve_a, reserve_b=pool.reserve_b) == pool
    assert after.reserves_for(mint) == (result.new_reserve_in, result.new_reserve_out)


@pytest.mark.parametrize(("mint", "reserves"), [(A, (1_010_000, 1_980_248)),
                                                (B, (995_038, 2_010_000))])
def test_apply_swap_examples(mint: str, reserves: tuple[int, int]) -> None:
    pool = make_pool()
    after = apply_swap(pool, mint, swap_exact_in(pool, mint, 10_000))
    assert (after.reserve_a, after.reserve_b) == reserves
    assert (pool.reserve_a, pool.reserve_b) == (1_000_000, 2_000_000)


# --- refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("pool", "amount_in", "message"),
    [
        # 1 unit into a deep-in/shallow-out pool: 1_000 * 1 // 1_000_001 = 0
        (make_pool(1_000_000, 1_000, fee=(0, 10_000)), 1, "too small"),
        # Fee rounded up eats the single unit: ceil(25/10_000) = 1, nothing left to swap
        (make_pool(fee=(25, 10_000), rounding=FeeRounding.UP), 1, "too small"),
        (make_pool(0, 2_000_000), 1_000, "empty"),
        (make_pool(1_000_000, 0), 1_000, "empty"),
    ],
)
def test_insufficient_liquidity(pool: PoolState, amount_in: int, message: str) -> None:
    with pytest.raises(InsufficientLiquidityError, match=message) as caught:
        swap_exact_in(pool, A, amount_in)
    assert not caught.value.transient


def test_a_single_unit_survives_a_floored_fee() -> None:
    # floor(25/10_000) = 0: the unit is swapped whole, 2_000_000 * 1 // 1_000_001 = 1
    result = swap_exact_in(make_pool(rounding=FeeRounding.DOWN), A, 1)
    assert (result.fee, result.amount_out) == (0, 1)


@pytest.mark.parametrize("mint", [BONK.mint, "not-a-mint", ""])
def test_a_mint_outside_the_pool_is_an_invalid_pair(mint: str) -> None:
    pool = make_pool()
    assert not pool.has_mint(mint)
    with pytest.raises(InvalidPairError, match="pool-1 does not hold") as caught:
        swap_exact_in(pool, mint, 10_000)
    assert not caught.value.transient


@pytest.mark.parametrize("amount_in", [0, -1])
def test_amount_in_must_be_positive(amount_in: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        swap_exact_in(make_pool(), A, amount_in)


def test_pool_describes_its_fee_and_mints() -> None:
    pool = make_pool()
    assert pool.fee_fraction_text == "25/10000"
    assert pool.has_mint(A)
    assert pool.has_mint(B)
    assert pool.reserves_for(A) == (1_000_000, 2_000_000)
    assert pool.reserves_for(B) == (2_000_000, 1_000_000)
