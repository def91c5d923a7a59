"""Routing: the best venue quote wins, and quotes/routes are shown in token units."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from order_engine.domain.amm import Venue
from order_engine.domain.errors import NoRouteError
from order_engine.domain.routing import VenueQuote, best_quote, quote_to_json, route_to_json
from order_engine.domain.tokens import BONK, SOL, USDC, UnknownTokenError


def quote(
    venue: Venue = Venue.RAYDIUM,
    amount_out: int = 150_250_000,
    *,
    pool_id: str = "pool-1",
    input_mint: str = SOL.mint,
    output_mint: str = USDC.mint,
    amount_in: int = 1_000_000_000,
    fee: int = 2_500_000,
) -> VenueQuote:
    return VenueQuote(venue, pool_id, input_mint, output_mint, amount_in, amount_out, fee)


quotes = st.builds(
    quote,
    venue=st.sampled_from(Venue),
    amount_out=st.integers(min_value=1, max_value=1_000),  # narrow range: plenty of ties
    pool_id=st.text(alphabet="abc123", min_size=1, max_size=6),
)


# --- best_quote -------------------------------------------------------------------------

def test_the_larger_output_wins() -> None:
    raydium, meteora = quote(Venue.RAYDIUM, 150_000_000), quote(Venue.METEORA, 150_000_001)
    assert best_quote([raydium, meteora]) is meteora
    assert best_quote([meteora, raydium]) is meteora


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_tie_goes_to_the_venue_named_first(order: tuple[int, int]) -> None:
    tied = [quote(Venue.RAYDIUM, 150_000_000), quote(Venue.METEORA, 150_000_000)]
    chosen = best_quote([tied[i] for i in order])
    assert chosen.venue is Venue.METEORA  # "meteora" < "raydium"


@given(st.lists(quotes, min_size=1, max_size=8).flatmap(
    lambda qs: st.tuples(st.just(qs), st.permutations(qs))
))
def test_best_quote_is_the_largest_output_whatever_the_order(
    lists: tuple[list[VenueQuote], list[VenueQuote]],
) -> None:
    original, shuffled = lists
    chosen = best_quote(original)
    top = max(q.amount_out for q in original)
    assert chosen.amount_out == top
    assert chosen.venue.value == min(q.venue.value for q in original if q.amount_out == top)
    again = best_quote(shuffled)
    assert (again.venue, again.amount_out) == (chosen.venue, chosen.amount_out)


def test_no_quotes_is_no_route() -> None:
    with pytest.raises(NoRouteError, match="no venue quoted this pair") as caught:
        best_quote([])
    assert not caught.value.transient


# --- JSON views -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("venue_quote", "expected"),
    [
        # 1 SOL in, 150.25 USDC out, 0.0025 SOL fee
        (
            quote(Venue.RAYDIUM),
            {"venue": "raydium", "amountOut": "150.25", "price": "150.25", "fee": "0.0025"},
        ),
        # 3 USDC in, 0.000000002 SOL out: the price truncates to 18 significant digits
        (
            quote(Venue.METEORA, 2, input_mint=USDC.mint, output_mint=SOL.mint,
                  amount_in=3_000_000, fee=0),
            {"venue": "meteora", "amountOut": "0.000000002",
             "price": "0.000000000666666666666666666", "fee": "0"},
        ),
        # 0.5 SOL in, 1_234_567.89012 BONK out, fee 0.00125 SOL
        (
            quote(Venue.RAYDIUM, 123_456_789_012, output_mint=BONK.mint,
                  amount_in=500_000_000, fee=1_250_000),
            {"venue": "raydium", "amountOut": "1234567.89012", "price": "2469135.78024",
             "fee": "0.00125"},
        ),
    ],
)
def test_quote_to_json(venue_quote: VenueQuote, expected: dict[str, str]) -> None:
    assert quote_to_json(venue_quote) == expected


def test_route_to_json_is_one_leg_in_token_units() -> None:
    assert route_to_json(quote(pool_id="58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2")) == [
        {
            "venue": "raydium",
            "pool": "58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2",
            "inputToken": "SOL",
            "outputToken": "USDC",
            "amountIn": "1",
            "amountOut": "150.25",
        }
    ]


@pytest.mark.parametrize("view", [quote_to_json, route_to_json])
def test_json_views_refuse_an_unknown_mint(view: Callable[[VenueQuote], object]) -> None:
    with pytest.raises(UnknownTokenError):
        view(quote(output_mint="not-a-mint"))
