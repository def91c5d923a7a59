"""A route plan as clients see it: per-venue quotes, legs with percentages, impact.

The shape follows what aggregator users know (Jupiter's route plan): every leg names its
venue and pool, its input and output, and the percent of the order's input it carries.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from order_engine.domain.amm import Venue
from order_engine.domain.amounts import execution_price, format_amount
from order_engine.domain.impact import format_impact_pct, shown_impact_pct
from order_engine.domain.router import Path, RoutePlan
from order_engine.domain.tokens import token_by_mint


def _percent(part: int, whole: int) -> str:
    value = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"))
    return format(value.normalize(), "f")


def venue_quotes(plan: RoutePlan, paths: list[Path]) -> list[dict[str, str]]:
    """Each venue's best single path for the whole amount (what that venue alone gives)."""
    token_in, token_out = token_by_mint(plan.input_mint), token_by_mint(plan.output_mint)
    best: dict[Venue, tuple[int, Path]] = {}
    for path in paths:
        if len(path.venues) != 1:
            continue
        venue = next(iter(path.venues))
        out = path.quote(plan.amount_in)
        if out > 0 and (venue not in best or out > best[venue][0]):
            best[venue] = (out, path)
    quotes = []
    for venue, (out, path) in sorted(best.items(), key=lambda item: -item[1][0]):
        first = path.hops[0]
        quotes.append({
            "venue": venue.value,
            "amountOut": format_amount(out, token_out),
            "price": execution_price(plan.amount_in, token_in, out, token_out),
            # The first hop's fee, in the input token.
            "fee": format_amount(first.pool.fee(first.input_mint, plan.amount_in), token_in),
        })
    return quotes


def route_legs(plan: RoutePlan) -> list[dict[str, Any]]:
    """One entry per hop: venue, pool, tokens, amounts, and the percent of the order."""
    legs = []
    for path_index, leg in enumerate(plan.legs):
        share = _percent(leg.amount_in, plan.amount_in)
        for hop, (amount_in, amount_out) in zip(leg.path.hops, leg.hop_amounts, strict=True):
            token_in, token_out = token_by_mint(hop.input_mint), token_by_mint(hop.output_mint)
            legs.append({
                "venue": hop.pool.venue.value,
                "pool": hop.pool.pool_id,
                "inputToken": token_in.symbol,
                "outputToken": token_out.symbol,
                "amountIn": format_amount(amount_in, token_in),
                "amountOut": format_amount(amount_out, token_out),
                "percent": share,
                "path": path_index,
            })
    return legs


def route_summary(plan: RoutePlan) -> dict[str, Any]:
    token_out = token_by_mint(plan.output_mint)
    single = plan.best_single_venue
    return {
        "priceImpactPct": format_impact_pct(shown_impact_pct(plan.price_impact_pct)),
        "bestSingleVenue": None if single is None else {
            "venue": single[0].value, "amountOut": format_amount(single[1], token_out),
        },
    }
