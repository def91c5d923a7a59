"""Routing an amount now: the venues' pools, the router, and the route as it executes."""

from __future__ import annotations

import time
from typing import Any

from solders.pubkey import Pubkey

from order_engine import metrics
from order_engine.domain.amm import Venue
from order_engine.domain.router import RoutePlan, hop_cost_in, plan_route
from order_engine.market.pool_codec import routable
from order_engine.market.programs import RouteInstruction, RouteStep, pool_address
from order_engine.market.venues import SimulatedVenue, fetch_pools


async def quote_route(
    venues: list[SimulatedVenue], input_mint: str, output_mint: str, amount_in: int,
    timeout_s: float,
) -> RoutePlan:
    pools = [routable(p, int(time.time())) for p in await fetch_pools(venues, timeout_s)]
    with metrics.ROUTING_SECONDS.time():
        return plan_route(pools, input_mint, output_mint, amount_in,
                          hop_cost_in(pools, output_mint))


def execution_steps(plan: RoutePlan) -> list[dict[str, Any]]:
    """What the transaction must do, kept with the order so a rebuild does the same."""
    steps = []
    for path_index, leg in enumerate(plan.legs):
        for hop_index, hop in enumerate(leg.path.hops):
            steps.append({
                "path": path_index,
                "pool": hop.pool.pool_id,
                "venue": hop.pool.venue.value,
                "aToB": hop.input_mint == hop.pool.mints[0],
                "amountIn": str(leg.amount_in) if hop_index == 0 else "0",
            })
    return steps


def route_instruction(
    steps: list[dict[str, Any]], owner: Pubkey, input_mint: str, output_mint: str,
    min_amount_out: int,
) -> RouteInstruction:
    return RouteInstruction(
        owner=owner,
        input_mint=Pubkey.from_string(input_mint),
        output_mint=Pubkey.from_string(output_mint),
        min_amount_out=min_amount_out,
        steps=tuple(
            RouteStep(int(s["path"]), pool_address(Venue(s["venue"]), s["pool"]),
                      bool(s["aToB"]), int(s["amountIn"]))
            for s in steps
        ),
    )
