"""The route plan as clients see it: venue quotes, legs with percentages, summary."""

from __future__ import annotations

from decimal import Decimal

from order_engine.domain.amm import FeeRounding, PoolState, Venue
from order_engine.domain.pools import ConstantProductPool
from order_engine.domain.router import plan_route
from order_engine.domain.routing import route_legs, route_summary, venue_quotes
from order_engine.domain.tokens import BONK, JUP, SOL, USDC

POOLS = [
    ConstantProductPool(PoolState("raydium-SOL-USDC", Venue.RAYDIUM, SOL.mint, USDC.mint,
                                  1_000 * 10**9, 150_000 * 10**6, 25, 10_000, FeeRounding.UP)),
    ConstantProductPool(PoolState("meteora-SOL-USDC", Venue.METEORA, SOL.mint, USDC.mint,
                                  1_000 * 10**9, 151_000 * 10**6, 30, 10_000, FeeRounding.DOWN)),
]


def test_a_split_route_lists_each_leg_with_its_share_of_the_order() -> None:
    plan = plan_route(POOLS, SOL.mint, USDC.mint, 100 * 10**9)
    legs = route_legs(plan)

    assert {leg["venue"] for leg in legs} == {"raydium", "meteora"}
    assert sum(Decimal(leg["percent"]) for leg in legs) == Decimal(100)
    assert sum(Decimal(leg["amountIn"]) for leg in legs) == Decimal(100)
    assert sum(Decimal(leg["amountOut"]) for leg in legs) == Decimal(plan.amount_out) / 10**6
    assert all(leg["inputToken"] == "SOL" and leg["outputToken"] == "USDC" for leg in legs)


def test_venue_quotes_show_what_each_venue_alone_gives_best_first() -> None:
    plan = plan_route(POOLS, SOL.mint, USDC.mint, 10**9)
    quotes = venue_quotes(plan, list(plan.paths))

    assert [q["venue"] for q in quotes] == ["meteora", "raydium"]
    assert Decimal(quotes[0]["amountOut"]) > Decimal(quotes[1]["amountOut"])
    assert quotes[1]["fee"] == "0.0025"  # 0.25% of 1 SOL, in SOL
    assert Decimal(quotes[0]["price"]) == Decimal(quotes[0]["amountOut"])  # for 1 SOL


def test_summary_has_impact_and_the_best_single_venue() -> None:
    plan = plan_route(POOLS, SOL.mint, USDC.mint, 100 * 10**9)
    summary = route_summary(plan)
    assert Decimal(summary["priceImpactPct"]) > 0
    assert summary["bestSingleVenue"]["venue"] == "meteora"
    assert Decimal(summary["bestSingleVenue"]["amountOut"]) < Decimal(plan.amount_out) / 10**6


def test_a_three_hop_route_is_listed_hop_by_hop_and_executes_as_quoted() -> None:
    """BONK -> JUP (no pool or two-hop path): each path's three hops are listed like a
    two-hop path's, and the aggregator instruction built from the plan (later hops carry
    what the previous one produced) lands exactly the quoted output on the chain."""
    from order_engine.market.chain import _execute_route
    from order_engine.market.config import load_market_config
    from order_engine.market.genesis import genesis_pools
    from order_engine.market.pool_codec import routable, venue_of
    from order_engine.market.programs import decode_route, pool_address
    from order_engine.market.transactions import engine_wallet
    from order_engine.quoting import execution_steps, route_instruction

    chain_pools = genesis_pools(load_market_config(), 0)
    pools = [routable(p, 0) for p in chain_pools]
    amount = 10**5 * 10**8  # 100 million BONK
    plan = plan_route(pools, BONK.mint, JUP.mint, amount)

    legs = route_legs(plan)
    assert len(legs) == 3 * len(plan.legs)
    for path in range(len(plan.legs)):
        hops = [leg for leg in legs if leg["path"] == path]
        assert [(h["inputToken"], h["outputToken"]) for h in hops] == [
            ("BONK", "SOL"), ("SOL", "USDC"), ("USDC", "JUP")]
        assert len({h["percent"] for h in hops}) == 1
        assert [h["amountIn"] for h in hops[1:]] == [h["amountOut"] for h in hops[:-1]]

    steps = execution_steps(plan)
    assert [s["amountIn"] != "0" for s in steps] == [True, False, False] * len(plan.legs)
    instruction = route_instruction(steps, engine_wallet().pubkey(), BONK.mint, JUP.mint,
                                    plan.amount_out).to_instruction()
    route = decode_route(instruction.program_id,
                         [meta.pubkey for meta in instruction.accounts], bytes(instruction.data))
    by_address = {str(pool_address(venue_of(p), p.pool_id)): p for p in chain_pools}
    landed, amount_out = _execute_route(route, by_address, 0)
    assert amount_out == plan.amount_out
    assert len(landed) == len(steps)
