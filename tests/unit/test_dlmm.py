"""Meteora DLMM pool math: bin prices, swaps across bins, dynamic fees, pool building."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from order_engine.domain.dlmm import (
    BASIS_POINT_MAX,
    FEE_PRECISION,
    MAX_FEE_RATE,
    ONE_Q64,
    SHAPES,
    Bin,
    DlmmParams,
    DlmmPool,
    DlmmSwapResult,
    base_fee_rate,
    bin_ladder,
    bin_price,
    bin_price_q64,
    fee_rate_now,
    make_pool,
    quote_exact_in,
    spot_price,
    swap_exact_in,
    total_fee_rate,
)
from order_engine.domain.errors import InsufficientLiquidityError, InvalidPairError
from order_engine.domain.tokens import SOL, USDC

X, Y = SOL.mint, USDC.mint
# base_factor 10_000 at bin step 10: a base fee of 10_000 * 10 * 10 = 1_000_000 / 1e9 = 0.1%.
PARAMS = DlmmParams(bin_step=10, base_factor=10_000)


def pool_of(*bins: Bin, active_id: int = 0, params: DlmmParams = PARAMS) -> DlmmPool:
    return DlmmPool(pool_id="dlmm-1", mint_x=X, mint_y=Y, params=params,
                    active_id=active_id, bins=bins, index_reference=active_id)


def spot_pool(params: DlmmParams = PARAMS, total: int = 10**12, shape: str = "spot",
              bins_each_side: int = 35) -> DlmmPool:
    # SOL/USDC at 150 USDC per SOL in base units: 150e6 / 1e9 = 0.15 Y per X.
    return make_pool("dlmm-1", X, Y, params, Fraction(3, 20), total_x=total,
                     total_y=total * 3 // 20, shape=shape, bins_each_side=bins_each_side)


def capacity(pool: DlmmPool, mint: str, now_ts: int = 0) -> int:
    """The input that drains every bin the swap can reach."""
    return sum(step.amount_in for step in bin_ladder(pool, mint, now_ts))


def swap_or_none(pool: DlmmPool, mint: str, amount_in: int, now_ts: int = 0
                 ) -> DlmmSwapResult | None:
    try:
        return swap_exact_in(pool, mint, amount_in, now_ts)
    except InsufficientLiquidityError:
        return None


@st.composite
def pools(draw: st.DrawFn) -> DlmmPool:
    params = DlmmParams(
        bin_step=draw(st.sampled_from([1, 5, 10, 25, 100])),
        base_factor=draw(st.sampled_from([5_000, 10_000, 20_000])),
        variable_fee_control=draw(st.sampled_from([0, 40_000, 2_000_000])),
        protocol_share=draw(st.integers(min_value=0, max_value=2_500)),
    )
    price = draw(st.fractions(min_value=Fraction(1, 10**4), max_value=10**4,
                              max_denominator=10**6))
    return make_pool(
        "dlmm-1", X, Y, params, price,
        total_x=draw(st.integers(min_value=0, max_value=10**15)),
        total_y=draw(st.integers(min_value=0, max_value=10**15)),
        shape=draw(st.sampled_from(SHAPES)),
        bins_each_side=draw(st.integers(min_value=0, max_value=12)),
    )


mints = st.sampled_from([X, Y])
# A share of what the pool can absorb, beyond 1 to reach insufficient liquidity too.
shares = st.fractions(min_value=Fraction(1, 10**6), max_value=Fraction(11, 10),
                      max_denominator=10**6)


def amount_for(pool: DlmmPool, mint: str, share: Fraction) -> int:
    return max(1, int(capacity(pool, mint) * share))


# --- bin prices ---------------------------------------------------------------------------

@pytest.mark.parametrize("bin_step", [1, 10, 100, 10_000])
def test_bin_zero_has_price_exactly_one(bin_step: int) -> None:
    assert bin_price_q64(0, bin_step) == ONE_Q64


@pytest.mark.parametrize(
    ("bin_id", "bin_step", "scaled_price"),
    [
        # The program's own unit tests (u64x64_math.rs test_pow, price_math.rs tests):
        # Q64.64 price of bin 3333 at 15 bps, and price * 1e12 >> 64 for +-5555 at 10 bps.
        (3333, 15, None),
        (5555, 10, 257_810_379_178_651),
        (-5555, 10, 3_878_819_786),
    ],
)
def test_bin_price_matches_the_programs_reference_values(
    bin_id: int, bin_step: int, scaled_price: int | None
) -> None:
    price = bin_price_q64(bin_id, bin_step)
    if scaled_price is None:
        assert price == 2_726_140_093_009_341_558_707
    else:
        assert price * 10**12 >> 64 == scaled_price


def test_bin_100_at_10_bps_is_1_001_to_the_100th_within_q64_precision() -> None:
    exact = Fraction(1_001, 1_000) ** 100
    assert abs(bin_price(100, 10) - exact) / exact < Fraction(1, 10**16)


@given(bin_step=st.sampled_from([1, 10, 100]), bin_id=st.integers(min_value=1, max_value=1_300))
def test_negative_ids_are_reciprocals_within_rounding(bin_step: int, bin_id: int) -> None:
    # Up to 100 bps * 1_300 bins the prices stay within 1e-6..1e6, where Q64.64 keeps
    # at least 44 significant bits.
    product = bin_price(bin_id, bin_step) * bin_price(-bin_id, bin_step)
    assert abs(product - 1) < Fraction(1, 10**12)


@given(bin_step=st.sampled_from([1, 10, 100]),
       bin_id=st.integers(min_value=-1_300, max_value=1_300))
def test_prices_rise_by_one_bin_step_per_bin(bin_step: int, bin_id: int) -> None:
    ratio = bin_price(bin_id + 1, bin_step) / bin_price(bin_id, bin_step)
    assert abs(ratio - Fraction(BASIS_POINT_MAX + bin_step, BASIS_POINT_MAX)) < Fraction(1, 10**12)


# --- hand-computed swaps -----------------------------------------------------------------

def test_single_bin_swap_x_for_y_hand_computed() -> None:
    # Bin 0 (price exactly 1) holds 1_000_000 Y. Base fee 0.1% (1_000_000 / 1e9), no
    # volatility yet (the swap starts in the reference bin), protocol share 20%.
    # 12_345 X in: fits the bin (max in 1_000_000 + fee on top ceil(1e6*1e6/999e6) = 1_002).
    #   fee = ceil(12_345 * 1_000_000 / 1e9) = ceil(12.345) = 13
    #   out = floor((12_345 - 13) * 1) = 12_332
    #   protocol fee = floor(13 * 2_000 / 10_000) = floor(2.6) = 2, LP fee 11
    pool = pool_of(Bin(0, 0, 1_000_000), params=replace(PARAMS, protocol_share=2_000))
    result = swap_exact_in(pool, X, 12_345, now_ts=0)
    assert (result.amount_out, result.fee, result.protocol_fee, result.bins_crossed) == (
        12_332, 13, 2, 0)
    assert result.new_pool.bins == (Bin(0, 12_332, 1_000_000 - 12_332),)
    assert (result.new_pool.fee_x, result.new_pool.protocol_fee_x) == (11, 2)
    assert (result.new_pool.fee_y, result.new_pool.protocol_fee_y) == (0, 0)


def test_single_bin_swap_y_for_x_hand_computed() -> None:
    # Bin 1 at 10 bps: Q64.64 price 2^64 + floor(2^64 / 1_000) = 18_465_190_817_783_261_167
    # (1.001 less 1.7e-18). 5_000 Y in: fee = ceil(5_000 * 0.001) = 5; the X out is
    #   floor(4_995 * 2^64 / price) = floor(4_990.00999...) = 4_990.
    pool = pool_of(Bin(1, 1_000_000, 0), active_id=1)
    assert bin_price_q64(1, 10) == 18_465_190_817_783_261_167
    result = swap_exact_in(pool, Y, 5_000, now_ts=0)
    assert (result.amount_out, result.fee, result.protocol_fee) == (4_990, 5, 0)
    assert result.new_pool.bins == (Bin(1, 1_000_000 - 4_990, 4_995),)
    assert result.new_pool.fee_y == 5


def test_swap_across_two_bins_hand_computed() -> None:
    # 1_502 X into bins 0 (1_000 Y, price 1) and -1 (1_000 Y, price 2^128-1 // base ~ 1/1.001).
    # Bin 0, volatility 0, rate 0.1%: emptying it takes 1_000 X plus
    #   ceil(1_000 * 1e6 / (1e9 - 1e6)) = ceil(1.001) = 2 of fee: 1_002 in, 1_000 out.
    # Bin -1, one bin from the reference: volatility 10_000, variable fee
    #   ceil(40_000 * (10_000 * 10)^2 / 1e11) = 4_000, rate 1_004_000. 500 X left:
    #   fee ceil(500 * 0.001004) = 1, out floor(499 * 0.999000999...) = 498.
    pool = pool_of(Bin(-1, 0, 1_000), Bin(0, 0, 1_000))
    result = swap_exact_in(pool, X, 1_502, now_ts=0)
    assert (result.amount_out, result.fee, result.bins_crossed) == (1_498, 3, 1)
    assert result.new_pool.bins == (Bin(-1, 499, 502), Bin(0, 1_000, 0))
    assert (result.new_pool.active_id, result.new_pool.volatility_accumulator) == (-1, 10_000)


def test_swap_crossing_several_bins_lands_in_the_expected_bin() -> None:
    # Five bins of 1_000 Y below (prices ~1, fee < 1%): three bins take at most ~3_050 X,
    # four at least 4_000, so 3_700 X ends in the fourth bin, -3.
    pool = pool_of(*(Bin(bin_id, 0, 1_000) for bin_id in range(-4, 1)))
    result = swap_exact_in(pool, X, 3_700, now_ts=0)
    after = result.new_pool
    assert (after.active_id, result.bins_crossed) == (-3, 3)
    assert [after.bin_amounts(b)[1] for b in (0, -1, -2)] == [0, 0, 0]
    assert 0 < after.bin_amounts(-3)[1] < 1_000
    assert after.bin_amounts(-4) == (0, 1_000)


def test_an_active_bin_without_the_output_token_is_skipped() -> None:
    # The active bin holds only X; selling X takes Y from the bin below.
    pool = pool_of(Bin(-1, 0, 1_000), Bin(0, 1_000, 0))
    result = swap_exact_in(pool, X, 100, now_ts=0)
    assert result.new_pool.active_id == -1
    assert result.new_pool.bin_amounts(0) == (1_000, 0)


# --- properties ---------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(pool=pools(), mint=mints, share=shares, extra=st.integers(min_value=1, max_value=10**9))
def test_more_in_never_gives_less_out(
    pool: DlmmPool, mint: str, share: Fraction, extra: int
) -> None:
    assume(capacity(pool, mint) > 0)
    amount = amount_for(pool, mint, share)
    smaller, larger = swap_or_none(pool, mint, amount), swap_or_none(pool, mint, amount + extra)
    if larger is None:
        return
    if smaller is not None:
        assert smaller.amount_out <= larger.amount_out


@settings(max_examples=80, deadline=None)
@given(pool=pools(), mint=mints, share=shares)
def test_swaps_create_no_value_and_account_for_every_unit(
    pool: DlmmPool, mint: str, share: Fraction
) -> None:
    assume(capacity(pool, mint) > 0)
    amount = amount_for(pool, mint, share)
    result = swap_or_none(pool, mint, amount)
    assume(result is not None)
    assert result is not None
    after, selling_x = result.new_pool, mint == X
    assert quote_exact_in(pool, mint, amount, 0) == result.amount_out

    def totals(p: DlmmPool) -> tuple[int, int, int, int]:
        return (sum(b.amount_x for b in p.bins), sum(b.amount_y for b in p.bins),
                p.fee_x + p.protocol_fee_x, p.fee_y + p.protocol_fee_y)

    bins_x, bins_y, fees_x, fees_y = totals(pool)
    new_bins_x, new_bins_y, new_fees_x, new_fees_y = totals(after)
    # The input, less its fee, goes into the bins; the output comes out of them; the fee
    # accrues outside the bins.
    gained_in, lost_out = ((new_bins_x - bins_x, bins_y - new_bins_y) if selling_x
                           else (new_bins_y - bins_y, bins_x - new_bins_x))
    fees_in, fees_out = ((new_fees_x - fees_x, new_fees_y - fees_y) if selling_x
                         else (new_fees_y - fees_y, new_fees_x - fees_x))
    assert (gained_in, lost_out) == (amount - result.fee, result.amount_out)
    assert (fees_in, fees_out) == (result.fee, 0)
    in_delta, out_delta = amount, -result.amount_out
    expected = ((pool.reserve_x + in_delta, pool.reserve_y + out_delta) if selling_x
                else (pool.reserve_x + out_delta, pool.reserve_y + in_delta))
    assert (after.reserve_x, after.reserve_y) == expected
    assert result.protocol_fee <= result.fee * pool.params.protocol_share // BASIS_POINT_MAX
    # Bin by bin, value at the bin's own price never falls (every rounding favours the pool).
    assert [b.bin_id for b in after.bins] == [b.bin_id for b in pool.bins]
    for old, new in zip(pool.bins, after.bins, strict=True):
        price = pool.price_of_bin(old.bin_id)
        assert new.amount_x * price + new.amount_y >= old.amount_x * price + old.amount_y
        assert min(new.amount_x, new.amount_y) >= 0


@settings(max_examples=40, deadline=None)
@given(pool=pools(), mint=mints)
def test_the_whole_ladder_drains_the_output_side_and_one_more_unit_is_too_much(
    pool: DlmmPool, mint: str
) -> None:
    everything = capacity(pool, mint)
    assume(everything > 0)
    result = swap_exact_in(pool, mint, everything, now_ts=0)
    after = result.new_pool
    assert (after.reserve_y if mint == X else after.reserve_x) == (
        after.fee_y + after.protocol_fee_y if mint == X else after.fee_x + after.protocol_fee_x)
    with pytest.raises(InsufficientLiquidityError):
        swap_exact_in(pool, mint, everything + 1, now_ts=0)


def test_more_than_all_the_bins_hold_is_insufficient_liquidity() -> None:
    pool = spot_pool(bins_each_side=5)
    with pytest.raises(InsufficientLiquidityError):
        swap_exact_in(pool, X, 10**18, now_ts=0)
    with pytest.raises(InsufficientLiquidityError):
        quote_exact_in(pool, Y, 10**18, now_ts=0)


def test_an_amount_too_small_for_any_output_is_refused() -> None:
    # 1 Y buys 1 / 0.15 X before fee, but 1 X sells for 0.15 Y, floored to nothing.
    with pytest.raises(InsufficientLiquidityError):
        swap_exact_in(spot_pool(), X, 1, now_ts=0)


def test_a_foreign_mint_is_an_invalid_pair() -> None:
    with pytest.raises(InvalidPairError):
        swap_exact_in(spot_pool(), "NotAMint1111111111111111111111111111111111", 10, now_ts=0)


@pytest.mark.parametrize("amount_in", [0, -1])
def test_a_non_positive_amount_is_rejected(amount_in: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        swap_exact_in(spot_pool(), X, amount_in, now_ts=0)


# --- dynamic fees -------------------------------------------------------------------------

def _fee_share(result: DlmmSwapResult) -> Fraction:
    return Fraction(result.fee, result.amount_in)


def test_a_second_swap_in_the_filter_period_pays_a_higher_fee_rate() -> None:
    pool = spot_pool()
    size = capacity(pool, X) // 6
    first = swap_exact_in(pool, X, size, now_ts=0)
    # Within the filter period (30 s) the reference bin stays where the first swap began,
    # so the second swap's bins are further from it: more volatility, more fee.
    second = swap_exact_in(first.new_pool, X, size, now_ts=10)
    assert first.bins_crossed >= 3
    assert second.bins_crossed >= 3
    assert _fee_share(second) > _fee_share(first) > Fraction(base_fee_rate(PARAMS), FEE_PRECISION)
    assert second.new_pool.index_reference == pool.active_id
    assert second.new_pool.volatility_accumulator > first.new_pool.volatility_accumulator


def test_volatility_decays_between_filter_and_decay_period_and_resets_after() -> None:
    pool = spot_pool()
    moved = swap_exact_in(pool, X, capacity(pool, X) // 6, now_ts=0).new_pool
    accumulated = moved.volatility_accumulator
    assert accumulated > 0
    assert fee_rate_now(moved, now_ts=10) == total_fee_rate(PARAMS, accumulated)

    # Past the filter period, the reference is the accumulator times the reduction factor.
    later = swap_exact_in(moved, Y, 10**6, now_ts=PARAMS.filter_period).new_pool
    assert later.volatility_reference == accumulated * PARAMS.reduction_factor // BASIS_POINT_MAX
    assert later.index_reference == moved.active_id

    # After the decay period of quiet, the reference resets: back to the base fee.
    rested = PARAMS.decay_period
    assert fee_rate_now(moved, now_ts=rested) == base_fee_rate(PARAMS)
    small = swap_exact_in(moved, Y, 10**6, now_ts=rested)
    assert small.bins_crossed == 0
    assert small.fee == -(-10**6 * base_fee_rate(PARAMS) // FEE_PRECISION)
    assert (small.new_pool.volatility_reference, small.new_pool.index_reference) == (
        0, moved.active_id)


@settings(max_examples=40, deadline=None)
@given(pool=pools(), mint=mints, share=shares,
       variable_fee_control=st.sampled_from([10**6, 10**8, 10**10]))
def test_fee_never_exceeds_the_programs_cap(
    pool: DlmmPool, mint: str, share: Fraction, variable_fee_control: int
) -> None:
    wild = replace(pool, params=replace(pool.params, variable_fee_control=variable_fee_control))
    assume(capacity(wild, mint) > 0)
    result = swap_or_none(wild, mint, amount_for(wild, mint, share))
    assume(result is not None)
    assert result is not None
    # Each bin's fee is at most 10% of what went into it, plus one unit of rounding up.
    bins_used = result.bins_crossed + 1
    assert result.fee * FEE_PRECISION <= (result.amount_in * MAX_FEE_RATE
                                          + bins_used * FEE_PRECISION)


@pytest.mark.parametrize("volatility_accumulator", [0, 10_000, 350_000, 10**9])
def test_the_fee_rate_is_capped_at_ten_percent(volatility_accumulator: int) -> None:
    params = replace(PARAMS, variable_fee_control=10**9)
    rate = total_fee_rate(params, volatility_accumulator)
    assert base_fee_rate(params) <= rate <= MAX_FEE_RATE
    if volatility_accumulator >= 10_000:
        assert rate == MAX_FEE_RATE


# --- building pools -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("total_x", "total_y"), [(10**12, 3 * 10**11), (999_999, 7), (0, 10**6)])
def test_make_pool_holds_the_exact_totals_on_the_right_sides(
    shape: str, total_x: int, total_y: int
) -> None:
    price = Decimal("0.15")
    pool = make_pool("dlmm-1", X, Y, PARAMS, price, total_x, total_y, shape=shape)
    assert (pool.reserve_x, pool.reserve_y) == (total_x, total_y)
    assert all(b.amount_y == 0 for b in pool.bins if b.bin_id > pool.active_id)
    assert all(b.amount_x == 0 for b in pool.bins if b.bin_id < pool.active_id)
    assert all(abs(b.bin_id - pool.active_id) <= 35 for b in pool.bins)
    active_price = pool.price_of_bin(pool.active_id)
    one_step = Fraction(BASIS_POINT_MAX + PARAMS.bin_step, BASIS_POINT_MAX)
    assert 1 / one_step <= active_price / Fraction(price) <= one_step


@given(price=st.fractions(min_value=Fraction(1, 10**9), max_value=10**9, max_denominator=10**9),
       bin_step=st.sampled_from([1, 10, 100]))
def test_make_pool_picks_the_bin_nearest_the_price(price: Fraction, bin_step: int) -> None:
    pool = make_pool("dlmm-1", X, Y, DlmmParams(bin_step=bin_step, base_factor=10_000),
                     price, 1_000, 1_000, bins_each_side=0)

    def distance(bin_id: int) -> Fraction:
        ratio = pool.price_of_bin(bin_id) / price
        return max(ratio, 1 / ratio)

    half_step = Fraction(2 * BASIS_POINT_MAX + bin_step, 2 * BASIS_POINT_MAX)
    assert distance(pool.active_id) <= half_step
    assert distance(pool.active_id) <= min(distance(pool.active_id - 1),
                                           distance(pool.active_id + 1))


@pytest.mark.parametrize(("shape", "near_is_larger"), [("curve", True), ("bid_ask", False)])
def test_shapes_concentrate_near_or_far_from_the_active_bin(
    shape: str, near_is_larger: bool
) -> None:
    pool = spot_pool(shape=shape)
    near_x, far_x = pool.bin_amounts(pool.active_id + 1)[0], pool.bin_amounts(
        pool.active_id + 35)[0]
    near_y, far_y = pool.bin_amounts(pool.active_id - 1)[1], pool.bin_amounts(
        pool.active_id - 35)[1]
    assert (near_x > far_x) is near_is_larger
    assert (near_y > far_y) is near_is_larger


def test_spot_shape_is_uniform_away_from_the_active_bin() -> None:
    pool = spot_pool()
    outer_x = {pool.bin_amounts(pool.active_id + d)[0] for d in range(1, 36)}
    outer_y = {pool.bin_amounts(pool.active_id - d)[1] for d in range(1, 36)}
    assert len(outer_x) == len(outer_y) == 1


def test_make_pool_rejects_an_unknown_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        spot_pool(shape="triangle")


# --- marginal price -----------------------------------------------------------------------

def test_spot_price_is_the_active_bin_price_each_way() -> None:
    pool = spot_pool()
    active_price = pool.price_of_bin(pool.active_id)
    assert spot_price(pool, X) == active_price
    assert spot_price(pool, Y) == 1 / active_price
    # A small trade gets the spot price less the fee, to rounding.
    out = quote_exact_in(pool, Y, 10**9, now_ts=0)
    expected = 10**9 * (1 - Fraction(base_fee_rate(PARAMS), FEE_PRECISION)) / active_price
    assert abs(out - expected) <= 1


def test_spot_price_moves_to_the_next_bin_once_the_active_one_is_drained() -> None:
    pool = pool_of(Bin(-1, 0, 1_000), Bin(0, 0, 1_000))
    drained = swap_exact_in(pool, X, 1_002, now_ts=0).new_pool
    assert drained.bin_amounts(0) == (1_000, 0)
    assert spot_price(drained, X) == pool.price_of_bin(-1)
    assert spot_price(drained, Y) == 1  # selling Y buys back the X now in bin 0


def test_spot_price_of_an_empty_side_is_insufficient_liquidity() -> None:
    with pytest.raises(InsufficientLiquidityError):
        spot_price(pool_of(Bin(0, 1_000, 0)), X)
