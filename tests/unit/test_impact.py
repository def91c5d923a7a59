"""The price-impact limit's arithmetic: the figure shown is the figure compared."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from order_engine.config import Settings
from order_engine.domain.impact import (
    IMPACT_QUANTUM,
    bps_as_pct,
    format_impact_pct,
    impact_over_limit,
    impact_reason,
    shown_impact_pct,
)

impacts = st.floats(min_value=0, max_value=100, allow_nan=False)
limits = st.integers(min_value=1, max_value=10_000)


@given(st.integers(min_value=0, max_value=1_000_000), limits)
def test_over_the_limit_is_an_exact_comparison_in_hundredths_of_a_basis_point(
    ten_thousandths_pct: int, limit_bps: int
) -> None:
    # A shown impact has 4 decimals of a percent: an integer count of 0.01 bps.
    impact = Decimal(ten_thousandths_pct) * IMPACT_QUANTUM
    assert impact_over_limit(impact, limit_bps) is (ten_thousandths_pct > limit_bps * 100)


@given(impacts)
def test_the_shown_figure_is_the_router_figure_to_four_decimals(router_pct: float) -> None:
    shown = shown_impact_pct(router_pct)
    assert shown >= 0
    assert abs(shown - Decimal(repr(router_pct))) <= IMPACT_QUANTUM / 2
    # What JSON carries reads back as the same number the limit was compared with.
    assert Decimal(format_impact_pct(shown)) == shown


@given(impacts, impacts, limits)
def test_more_impact_is_never_allowed_where_less_was_refused(
    a: float, b: float, limit_bps: int
) -> None:
    low, high = sorted((a, b))
    if impact_over_limit(shown_impact_pct(low), limit_bps):
        assert impact_over_limit(shown_impact_pct(high), limit_bps)


@given(limits)
def test_an_impact_exactly_at_the_limit_is_allowed(limit_bps: int) -> None:
    at = Decimal(limit_bps) / 100
    assert not impact_over_limit(at, limit_bps)
    assert impact_over_limit(at + IMPACT_QUANTUM, limit_bps)
    assert Decimal(bps_as_pct(limit_bps).rstrip("%")) == at


def test_the_reason_names_both_figures_and_the_limit_source() -> None:
    assert impact_reason(Decimal("99.9812"), 500, "maxPriceImpactBps") == (
        "price impact 99.9812% is over the order's limit 5.00% (maxPriceImpactBps); "
        "nothing was sent")
    assert format_impact_pct(shown_impact_pct(0.0)) == "0"


def test_the_default_limit_may_not_exceed_the_ceiling() -> None:
    with pytest.raises(ValidationError, match="MAX_PRICE_IMPACT_BPS_CEILING"):
        Settings(_env_file=None, max_price_impact_bps=2000,
                 max_price_impact_bps_ceiling=1500)
