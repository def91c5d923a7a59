"""An order's price-impact limit: the figure it is held to and the comparison.

The figure is the route's `priceImpactPct` exactly as the order object, the `building`
event and `GET /api/quote` show it (the router's float, rounded to 4 decimals of a
percent), so an order never fails on a number its owner cannot see. For a split or
multi-hop route it is the route's whole output against the best marginal price of every
candidate path before the trade (router._price_impact): what the order moves the market
it trades on, whichever pools carry it.

The limit is in basis points, an integer, as `slippageBps` is: 500 = 5.00%.
"""

from __future__ import annotations

from decimal import Decimal

# The shown figure's precision: 4 decimals of a percent (0.01 of a basis point).
IMPACT_QUANTUM = Decimal("0.0001")


def shown_impact_pct(router_pct: float) -> Decimal:
    """The router's price impact (a float, in percent) as clients see it."""
    if not router_pct > 0:  # 0, or a NaN the router never gives: no impact
        return Decimal(0)
    return Decimal(repr(router_pct)).quantize(IMPACT_QUANTUM)


def format_impact_pct(impact_pct: Decimal) -> str:
    """`priceImpactPct` as JSON carries it: a decimal string without trailing zeros."""
    return format(impact_pct.normalize(), "f")


def impact_over_limit(impact_pct: Decimal, limit_bps: int) -> bool:
    """True when the impact (in percent) is more than the limit (in basis points); an
    impact exactly at the limit is allowed."""
    return impact_pct * 100 > limit_bps


def bps_as_pct(bps: int) -> str:
    """500 -> '5.00%'."""
    return f"{Decimal(bps) / 100:.2f}%"


def impact_reason(impact_pct: Decimal, limit_bps: int, source: str) -> str:
    """The failure reason of an order refused for its impact; `source` says where its
    limit came from (the request field, or the setting it defaulted to)."""
    return (f"price impact {format_impact_pct(impact_pct)}% is over the order's limit "
            f"{bps_as_pct(limit_bps)} ({source}); nothing was sent")
