"""Choosing where an order executes, from the venues' quotes."""

from __future__ import annotations

from dataclasses import dataclass

from order_engine.domain.amm import Venue
from order_engine.domain.amounts import execution_price, format_amount
from order_engine.domain.errors import NoRouteError
from order_engine.domain.tokens import token_by_mint


@dataclass(frozen=True, slots=True)
class VenueQuote:
    venue: Venue
    pool_id: str
    input_mint: str
    output_mint: str
    amount_in: int
    amount_out: int
    fee: int


def best_quote(quotes: list[VenueQuote]) -> VenueQuote:
    """The quote with the most output; ties go to the venue named first alphabetically,
    so the choice is deterministic."""
    if not quotes:
        raise NoRouteError("no venue quoted this pair")
    return min(quotes, key=lambda q: (-q.amount_out, q.venue.value))


def quote_to_json(quote: VenueQuote) -> dict[str, str]:
    """A venue's quote as the API shows it: amounts in token units, as strings."""
    token_in, token_out = token_by_mint(quote.input_mint), token_by_mint(quote.output_mint)
    return {
        "venue": quote.venue.value,
        "amountOut": format_amount(quote.amount_out, token_out),
        "price": execution_price(quote.amount_in, token_in, quote.amount_out, token_out),
        "fee": format_amount(quote.fee, token_in),
    }


def route_to_json(quote: VenueQuote) -> list[dict[str, str]]:
    """The legs of the chosen route (one leg: a single pool on a single venue)."""
    token_in, token_out = token_by_mint(quote.input_mint), token_by_mint(quote.output_mint)
    return [
        {
            "venue": quote.venue.value,
            "pool": quote.pool_id,
            "inputToken": token_in.symbol,
            "outputToken": token_out.symbol,
            "amountIn": format_amount(quote.amount_in, token_in),
            "amountOut": format_amount(quote.amount_out, token_out),
        }
    ]
