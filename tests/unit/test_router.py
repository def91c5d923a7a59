"""The router: never worse than one path, as good as a brute-force search, hops only when
they pay."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from order_engine.domain import router
from order_engine.domain.amm import FeeRounding, PoolState, Venue
from order_engine.domain.errors import NoRouteError
from order_engine.domain.pools import ConstantProductPool
from order_engine.domain.router import RoutablePool, candidate_paths, plan_route
from order_engine.domain.tokens import BONK, JUP, SOL, USDC, USDT

R, M = Venue.RAYDIUM, Venue.METEORA


def cp(venue: Venue, a: str, b: str, reserve_a: int, reserve_b: int, fee_bps: int = 25,
       name: str = "") -> ConstantProductPool:
    rounding = FeeRounding.UP if venue is R else FeeRounding.DOWN
    pool_id = name or f"{venue.value}-{a[:4]}-{b[:4]}-{reserve_a}"
    return ConstantProductPool(PoolState(pool_id, venue, a, b, reserve_a, reserve_b,
                                         fee_bps, 10_000, rounding))


def brute_force(pools: Sequence[RoutablePool], amount: int, steps: int) -> int:
    """The best split of `amount` over the router's own candidate paths, on a grid."""
    paths = candidate_paths(pools, SOL.mint, USDC.mint)
    best = 0
    grid = range(steps + 1)
    for point in itertools.product(grid, repeat=len(paths) - 1):
        if sum(point) > steps:
            continue
        shares = [*point, steps - sum(point)]
        amounts = [amount * s // steps for s in shares]
        amounts[-1] += amount - sum(amounts)
        outs = [p.quote(a) for p, a in zip(paths, amounts, strict=True)]
        if min(outs) >= 0:
            best = max(best, sum(outs))
    return best


two_pools = st.tuples(
    st.integers(10**12, 10**14), st.integers(100, 200), st.integers(10**12, 10**14),
    st.integers(100, 200), st.sampled_from([5, 25, 30, 100]),
)


@settings(max_examples=40, deadline=None)
@given(pools=two_pools, fraction=st.floats(0.0001, 0.3))
def test_split_is_never_worse_than_the_best_single_pool_and_matches_a_grid_search(
    pools: tuple[int, int, int, int, int], fraction: float
) -> None:
    depth_r, price_r, depth_m, price_m, fee = pools
    venues = [
        cp(R, SOL.mint, USDC.mint, depth_r, depth_r * price_r // 1000),
        cp(M, SOL.mint, USDC.mint, depth_m, depth_m * price_m // 1000, fee_bps=fee),
    ]
    amount = max(1000, int(min(depth_r, depth_m) * fraction))

    plan = plan_route(venues, SOL.mint, USDC.mint, amount)

    best_single = max(p.quote(SOL.mint, amount) for p in venues)
    assert plan.amount_out >= best_single
    assert plan.amount_out >= brute_force(venues, amount, 4000) * (1 - 0.0001)
    assert sum(leg.amount_in for leg in plan.legs) == amount


def test_three_way_split_matches_a_grid_search() -> None:
    venues = [
        cp(R, SOL.mint, USDC.mint, 20_000 * 10**9, 3_000_000 * 10**6, name="a"),
        cp(M, SOL.mint, USDC.mint, 8_000 * 10**9, 1_209_600 * 10**6, fee_bps=30, name="b"),
        cp(M, SOL.mint, USDC.mint, 5_000 * 10**9, 748_000 * 10**6, fee_bps=5, name="c"),
    ]
    amount = 2_000 * 10**9  # a pool-moving 2,000 SOL
    plan = plan_route(venues, SOL.mint, USDC.mint, amount)
    assert len(plan.legs) == 3
    assert plan.amount_out >= brute_force(venues, amount, 300) * (1 - 0.0001)


def test_a_small_order_uses_one_pool() -> None:
    venues = [cp(R, SOL.mint, USDC.mint, 20_000 * 10**9, 3_000_000 * 10**6),
              cp(M, SOL.mint, USDC.mint, 8_000 * 10**9, 1_209_600 * 10**6, fee_bps=30)]
    # One hop costs 0.01 USDC: splitting 0.1 SOL cannot earn that back.
    plan = plan_route(venues, SOL.mint, USDC.mint, 10**8, hop_cost_out=10_000)
    assert len(plan.legs) == 1
    assert plan.legs[0].path.hops[0].pool.venue is M  # the better price


def test_two_hops_are_used_when_they_pay() -> None:
    # SOL/USDC pools are poor and thin; SOL/USDT and USDT/USDC are deep and fair.
    venues = [
        cp(R, SOL.mint, USDC.mint, 100 * 10**9, 14_000 * 10**6),  # 140 USDC per SOL
        cp(R, SOL.mint, USDT.mint, 20_000 * 10**9, 3_000_000 * 10**6),  # 150 USDT per SOL
        cp(M, USDT.mint, USDC.mint, 10**13, 10**13, fee_bps=5),
    ]
    plan = plan_route(venues, SOL.mint, USDC.mint, 10 * 10**9)
    hops = [len(leg.path.hops) for leg in plan.legs]
    assert 2 in hops
    assert plan.amount_out > venues[0].quote(SOL.mint, 10 * 10**9)


def test_two_hops_are_not_used_when_direct_is_better() -> None:
    venues = [
        cp(R, SOL.mint, USDC.mint, 20_000 * 10**9, 3_000_000 * 10**6),
        cp(R, SOL.mint, USDT.mint, 1_000 * 10**9, 150_000 * 10**6),
        cp(M, USDT.mint, USDC.mint, 10**11, 10**11, fee_bps=30),
    ]
    plan = plan_route(venues, SOL.mint, USDC.mint, 10**9, hop_cost_out=1_000)
    assert [len(leg.path.hops) for leg in plan.legs] == [1]


def test_a_pair_without_any_path_is_no_route() -> None:
    venues = [cp(R, SOL.mint, USDC.mint, 10**12, 10**12)]
    with pytest.raises(NoRouteError):
        plan_route(venues, BONK.mint, JUP.mint, 10**6)


def test_the_plan_reports_impact_and_the_best_single_venue() -> None:
    venues = [cp(R, SOL.mint, USDC.mint, 1_000 * 10**9, 150_000 * 10**6),
              cp(M, SOL.mint, USDC.mint, 1_000 * 10**9, 151_000 * 10**6, fee_bps=30)]
    small = plan_route(venues, SOL.mint, USDC.mint, 10**7)
    large = plan_route(venues, SOL.mint, USDC.mint, 200 * 10**9)
    assert small.price_impact_pct < 0.01
    assert large.price_impact_pct > 5
    assert large.best_single_venue is not None
    assert large.amount_out > large.best_single_venue[1]


def test_split_between_a_dlmm_and_a_constant_product_pool_matches_a_grid_search() -> None:
    from fractions import Fraction

    from order_engine.domain import dlmm
    from order_engine.domain.pools import DlmmRoutablePool

    bins = dlmm.make_pool("meteora-SOL-USDC", SOL.mint, USDC.mint,
                          dlmm.DlmmParams(bin_step=10, base_factor=10_000),
                          Fraction(151, 1000), 5_000 * 10**9, 755_000 * 10**6,
                          shape="curve", bins_each_side=60)
    venues: list[RoutablePool] = [
        cp(R, SOL.mint, USDC.mint, 20_000 * 10**9, 3_000_000 * 10**6),
        DlmmRoutablePool(bins, now_ts=0),
    ]
    for amount in (50 * 10**9, 500 * 10**9, 2_000 * 10**9):
        plan = plan_route(venues, SOL.mint, USDC.mint, amount)
        assert plan.amount_out >= brute_force(venues, amount, 4000) * (1 - 0.0001), amount


@settings(max_examples=60, deadline=None)
@given(pools=two_pools, fraction=st.floats(0.00001, 0.3))
# Equal prices and fees: a split gains 4 units of ~1e6, less than rounding over the step.
@example(pools=(1_172_928_199_980, 100, 1_000_000_000_000, 100, 25), fraction=1e-05)
def test_skipping_the_split_never_loses_output(
    pools: tuple[int, int, int, int, int], fraction: float
) -> None:
    """The shortcut that skips the split when it provably cannot help gives the same
    output as always running the split (hop costs off, so any split that helps counts)."""
    depth_r, price_r, depth_m, price_m, fee = pools
    venues = [
        cp(R, SOL.mint, USDC.mint, depth_r, depth_r * price_r // 1000),
        cp(M, SOL.mint, USDC.mint, depth_m, depth_m * price_m // 1000, fee),
    ]
    amount = max(1, int(min(depth_r, depth_m) * fraction))
    plan = plan_route(venues, SOL.mint, USDC.mint, amount)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(router, "_split_cannot_help", lambda *_: False)
        full = plan_route(venues, SOL.mint, USDC.mint, amount)
    assert plan.amount_out >= full.amount_out


def test_a_small_order_skips_the_split_and_a_pool_moving_one_does_not() -> None:
    venues = [cp(R, SOL.mint, USDC.mint, 10**13, 1_500 * 10**10),
              cp(M, SOL.mint, USDC.mint, 10**13, 1_500 * 10**10, 30)]
    paths = candidate_paths(venues, SOL.mint, USDC.mint)
    best = max(paths, key=lambda p: p.quote(10**9))
    assert router._split_cannot_help(best, paths, 10**9)  # 1 SOL in a 10,000 SOL pool
    assert not router._split_cannot_help(best, paths, 2 * 10**12)  # 20% of it: split
    assert len(plan_route(venues, SOL.mint, USDC.mint, 2 * 10**12).legs) == 2


# Three hops: pairs connected only through two intermediates, and paths that pay.


def genesis() -> list[RoutablePool]:
    from order_engine.market.config import load_market_config
    from order_engine.market.genesis import genesis_pools
    from order_engine.market.pool_codec import routable

    return [routable(p, 0) for p in genesis_pools(load_market_config(), 0)]


def chained_quote(path: router.Path, amount: int) -> int:
    for hop in path.hops:
        amount = hop.pool.quote(hop.input_mint, amount)
    return amount


def assert_exact_three_hop_route(plan: router.RoutePlan, middles: tuple[str, str]) -> None:
    assert plan.legs
    for leg in plan.legs:
        hops = leg.path.hops
        assert [(h.input_mint, h.output_mint) for h in hops] == [
            (plan.input_mint, middles[0]), middles, (middles[1], plan.output_mint)]
        assert len({h.pool.pool_id for h in hops}) == 3
        assert leg.amount_out == chained_quote(leg.path, leg.amount_in)
        # Each hop takes exactly what the previous one gave.
        assert [a for a, _ in leg.hop_amounts[1:]] == [b for _, b in leg.hop_amounts[:-1]]
    assert sum(leg.amount_in for leg in plan.legs) == plan.amount_in
    assert plan.amount_out == sum(leg.amount_out for leg in plan.legs)


@pytest.mark.parametrize("amount", [10**5, 10**5 * 10**6, 10**5 * 10**10])
def test_bonk_to_jup_routes_through_sol_and_usdc_on_the_genesis_market(amount: int) -> None:
    # 1 BONK, a million, ten billion: no pool or two-hop path trades BONK for JUP.
    pools = genesis()
    plan = plan_route(pools, BONK.mint, JUP.mint, amount,
                      router.hop_cost_in(pools, JUP.mint))
    assert_exact_three_hop_route(plan, (SOL.mint, USDC.mint))
    best_path = max(candidate_paths(pools, BONK.mint, JUP.mint), key=lambda p: p.quote(amount))
    assert plan.amount_out >= best_path.quote(amount)


def test_jup_to_bonk_routes_through_usdc_and_sol_on_the_genesis_market() -> None:
    plan = plan_route(genesis(), JUP.mint, BONK.mint, 500 * 10**6)
    assert_exact_three_hop_route(plan, (USDC.mint, SOL.mint))


def test_a_pair_linked_through_usdt_and_usdc_routes_over_three_pools() -> None:
    bonk_usdt = cp(R, BONK.mint, USDT.mint, 10**16, 2 * 10**9)  # 0.00002 USDT per BONK
    usdt_usdc = cp(M, USDT.mint, USDC.mint, 10**13, 10**13, fee_bps=5)
    usdc_jup = cp(R, USDC.mint, JUP.mint, 10**12, 125 * 10**10)  # 1.25 JUP per USDC
    amount = 10**5 * 10**6  # a million BONK
    plan = plan_route([bonk_usdt, usdt_usdc, usdc_jup], BONK.mint, JUP.mint, amount)
    assert_exact_three_hop_route(plan, (USDT.mint, USDC.mint))
    by_hand = usdc_jup.quote(USDC.mint, usdt_usdc.quote(USDT.mint,
                                                        bonk_usdt.quote(BONK.mint, amount)))
    assert plan.amount_out == by_hand


def test_three_hop_paths_use_two_different_intermediates_and_no_pool_twice() -> None:
    pools = genesis()
    paths = candidate_paths(pools, USDC.mint, BONK.mint)
    three = [p for p in paths if len(p.hops) == 3]
    # USDC -> USDT -> SOL -> BONK: two pools at each step.
    assert len(three) == 8
    assert {(p.hops[0].output_mint, p.hops[1].output_mint) for p in three} == {
        (USDT.mint, SOL.mint)}
    assert all(len(p.pool_ids) == 3 for p in three)
    assert all(len(p.hops) < 3 for p in candidate_paths(pools, USDC.mint, BONK.mint, 2))
    # Between two intermediates, the third cannot be passed through twice.
    assert not [p for p in candidate_paths(pools, SOL.mint, USDC.mint) if len(p.hops) == 3]


def test_three_hops_are_not_used_when_a_shorter_path_is_better() -> None:
    venues = [
        cp(R, USDC.mint, SOL.mint, 3 * 10**12, 20_000 * 10**9),  # 150 USDC per SOL
        cp(R, SOL.mint, BONK.mint, 10_000 * 10**9, 10**10 * 75 * 10**5),
        cp(R, USDC.mint, USDT.mint, 10**12, 10**12, fee_bps=30),
        cp(M, USDT.mint, SOL.mint, 3 * 10**11, 2_000 * 10**9),  # also 150
    ]
    plan = plan_route(venues, USDC.mint, BONK.mint, 100 * 10**6, hop_cost_out=10**5)
    assert [len(leg.path.hops) for leg in plan.legs] == [2]
    # Nothing to gain from a third hop, so the router did not even quote one.
    assert all(len(p.hops) < 3 for p in plan.paths)


def test_three_hops_are_used_on_a_pair_with_a_two_hop_path_when_they_pay() -> None:
    # USDC/SOL is poor; USDC -> USDT -> SOL is fair: USDC -> USDT -> SOL -> BONK wins.
    venues = [
        cp(R, USDC.mint, SOL.mint, 16 * 10**10, 1_000 * 10**9),  # 160 USDC per SOL
        cp(R, SOL.mint, BONK.mint, 10_000 * 10**9, 10**10 * 75 * 10**5),
        cp(M, USDC.mint, USDT.mint, 10**13, 10**13, fee_bps=1),
        cp(R, USDT.mint, SOL.mint, 3 * 10**12, 20_000 * 10**9),  # 150 USDT per SOL
    ]
    plan = plan_route(venues, USDC.mint, BONK.mint, 1_000 * 10**6, hop_cost_out=10**5)
    assert 3 in [len(leg.path.hops) for leg in plan.legs]
    two_hop = max((p for p in candidate_paths(venues, USDC.mint, BONK.mint)
                   if len(p.hops) == 2), key=lambda p: p.quote(1_000 * 10**6))
    assert plan.amount_out > two_hop.quote(1_000 * 10**6)


def test_a_pair_beyond_three_hops_is_no_route_and_says_so() -> None:
    # BONK -> SOL -> USDC -> USDT -> JUP would take four.
    venues = [cp(R, BONK.mint, SOL.mint, 10**15, 10**12),
              cp(R, SOL.mint, USDC.mint, 10**12, 10**12),
              cp(R, USDC.mint, USDT.mint, 10**12, 10**12),
              cp(R, USDT.mint, JUP.mint, 10**12, 10**12)]
    with pytest.raises(NoRouteError, match="no pool or path of up to three hops"):
        plan_route(venues, BONK.mint, JUP.mint, 10**6)


four_pools = st.tuples(*(st.tuples(st.integers(10**11, 10**14), st.integers(90, 110))
                         for _ in range(4)))


@settings(max_examples=60, deadline=None)
@given(pools=four_pools, fraction=st.floats(0.00001, 0.5))
def test_the_route_never_loses_to_any_single_path_nor_to_quoting_every_three_hop_one(
    pools: tuple[tuple[int, int], ...], fraction: float
) -> None:
    """USDC -> BONK over one two-hop and two three-hop paths at random prices: the route
    gives at least the best single path (any length), and leaving out the three-hop paths
    that cannot pay loses nothing against quoting them all."""
    (usdc_sol, p1), (usdc_usdt, p2), (usdt_sol, p3), (sol_bonk, p4) = pools
    venues = [
        cp(R, USDC.mint, SOL.mint, usdc_sol * p1 // 100, usdc_sol // 150 * 1000),
        cp(M, USDC.mint, USDT.mint, usdc_usdt, usdc_usdt * p2 // 100, fee_bps=5),
        cp(R, USDT.mint, USDC.mint, usdc_usdt, usdc_usdt * p2 // 100, fee_bps=30),
        cp(M, USDT.mint, SOL.mint, usdt_sol, usdt_sol // 150 * 1000 * p3 // 100),
        cp(R, SOL.mint, BONK.mint, sol_bonk, sol_bonk * 75_000 * p4 // 100),
    ]
    amount = max(1_000, int(min(usdc_sol, usdc_usdt, usdt_sol) * fraction))
    plan = plan_route(venues, USDC.mint, BONK.mint, amount)
    every_path = candidate_paths(venues, USDC.mint, BONK.mint)
    assert plan.amount_out >= max(p.quote(amount) for p in every_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(router, "_could_beat_shorter", lambda long, *_: long)
        unpruned = plan_route(venues, USDC.mint, BONK.mint, amount)
    assert plan.amount_out >= unpruned.amount_out * (1 - 0.0001)
