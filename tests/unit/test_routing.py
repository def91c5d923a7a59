"""The route plan as clients see it: venue quotes, legs with percentages, summary."""

from __future__ import annotations

from decimal import Decimal

from order_engine.domain.amm import FeeRounding, PoolState, Venue
from order_engine.domain.pools import ConstantProductPool
from order_engine.domain.router import plan_route
from order_engine.domain.routing import route_legs, route_summary, venue_quotes
from order_engine.domain.tokens import SOL, USDC

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
