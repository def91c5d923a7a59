"""Request bodies and the JSON shapes the API returns."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from order_engine.config import Settings
from order_engine.domain.amounts import AmountError, format_amount, parse_amount, to_base_units
from order_engine.domain.impact import bps_as_pct
from order_engine.domain.orders import OrderType
from order_engine.domain.tokens import (
    Token,
    UnknownTokenError,
    resolve_token,
    supported_symbols,
    token_by_mint,
)
from order_engine.store.models import Order

DEFAULT_SLIPPAGE_BPS = 50
MAX_SLIPPAGE_BPS = 5000


class SubmitOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["market"] = "market"
    inputToken: StrictStr = Field(max_length=64)
    outputToken: StrictStr = Field(max_length=64)
    # Any JSON value gets through here so that validate_trade reports every problem of the
    # amount in one message ("must be a decimal string or number", "too many decimals"...).
    amount: Any = Field(
        description="Amount of inputToken in token units, as a decimal string (or number)",
        json_schema_extra={"type": ["string", "number"], "examples": ["1.5"]},
    )
    slippageBps: StrictInt = Field(
        default=DEFAULT_SLIPPAGE_BPS, ge=1, le=MAX_SLIPPAGE_BPS
    )
    # Checked by validate_order against the server's settings (its default and ceiling).
    maxPriceImpactBps: StrictInt | None = Field(
        default=None,
        description="The most price impact this order accepts, in basis points (500 = 5%):"
                    " 1 to MAX_PRICE_IMPACT_BPS_CEILING (default 1500); absent:"
                    " MAX_PRICE_IMPACT_BPS (default 500). Over it, the order fails with"
                    " price_impact_too_high before anything is sent.",
        json_schema_extra={"minimum": 1, "examples": [500]},
    )


@dataclass(frozen=True, slots=True)
class ValidOrder:
    type: OrderType
    input_token: Token
    output_token: Token
    amount: Decimal
    amount_in: int
    slippage_bps: int
    max_price_impact_bps: int


class OrderValidationError(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def validate_trade(
    input_token: str, output_token: str, amount: object, max_amount: Decimal
) -> tuple[Token, Token, Decimal, int]:
    """The checks an order and a quote share; every problem is reported, not just the first."""
    errors: list[dict[str, str]] = []
    tokens: dict[str, Token] = {}
    for field, value in (("inputToken", input_token), ("outputToken", output_token)):
        try:
            tokens[field] = resolve_token(value)
        except UnknownTokenError:
            errors.append({
                "field": field,
                "message": f"unknown token {value!r}; supported: {', '.join(supported_symbols())}"
                           " (or their mint addresses)",
            })
    if (
        "inputToken" in tokens and "outputToken" in tokens
        and tokens["inputToken"] == tokens["outputToken"]
    ):
        errors.append({"field": "outputToken", "message": "must differ from inputToken"})
    parsed: Decimal | None = None
    units = 0
    try:
        parsed = parse_amount(amount)
        if parsed > max_amount:
            raise AmountError(f"must be at most {max_amount}")
        if "inputToken" in tokens:
            units = to_base_units(parsed, tokens["inputToken"])
    except AmountError as exc:
        errors.append({"field": "amount", "message": str(exc)})
    if errors:
        raise OrderValidationError(errors)
    assert parsed is not None
    return tokens["inputToken"], tokens["outputToken"], parsed, units


def price_impact_limit(requested: int | None, settings: Settings) -> int:
    """The order's price-impact limit in basis points: the one requested, within
    1..MAX_PRICE_IMPACT_BPS_CEILING, or MAX_PRICE_IMPACT_BPS."""
    if requested is None:
        return settings.max_price_impact_bps
    ceiling = settings.max_price_impact_bps_ceiling
    if not 1 <= requested <= ceiling:
        raise OrderValidationError([{
            "field": "maxPriceImpactBps",
            "message": f"must be from 1 to {ceiling} basis points ({bps_as_pct(ceiling)}, "
                       "this server's MAX_PRICE_IMPACT_BPS_CEILING)",
        }])
    return requested


def validate_order(body: SubmitOrderRequest, settings: Settings) -> ValidOrder:
    errors: list[dict[str, str]] = []
    trade: tuple[Token, Token, Decimal, int] | None = None
    limit = 0
    try:
        trade = validate_trade(body.inputToken, body.outputToken, body.amount,
                               settings.max_order_amount)
    except OrderValidationError as exc:
        errors += exc.errors
    try:
        limit = price_impact_limit(body.maxPriceImpactBps, settings)
    except OrderValidationError as exc:
        errors += exc.errors
    if errors or trade is None:
        raise OrderValidationError(errors)
    token_in, token_out, amount, units = trade
    return ValidOrder(OrderType(body.type), token_in, token_out, amount, units,
                      body.slippageBps, limit)


def _units(value: int | None, token: Token) -> str | None:
    return None if value is None else format_amount(value, token)


def order_to_json(order: Order) -> dict[str, Any]:
    token_in, token_out = token_by_mint(order.input_mint), token_by_mint(order.output_mint)
    return {
        "orderId": str(order.id),
        "type": order.type,
        "status": order.status,
        "inputToken": token_in.symbol,
        "outputToken": token_out.symbol,
        "amount": format_amount(order.amount_in, token_in),
        "slippageBps": order.slippage_bps,
        # None for orders submitted before limits existed (held to MAX_PRICE_IMPACT_BPS).
        "maxPriceImpactBps": order.max_price_impact_bps,
        "attempts": order.attempts,
        "quotes": order.quotes,
        "route": order.route,
        "priceImpactPct": (order.routing or {}).get("priceImpactPct"),
        "bestSingleVenue": (order.routing or {}).get("bestSingleVenue"),
        "expectedAmountOut": _units(order.expected_amount_out, token_out),
        "minAmountOut": _units(order.min_amount_out, token_out),
        "amountOut": _units(order.amount_out, token_out),
        "executionPrice": order.execution_price,
        "txHash": order.tx_signature if order.status in ("submitted", "confirmed", "failed")
        else None,
        "failureReason": order.failure_reason,
        "createdAt": _iso(order.created_at),
        "updatedAt": _iso(order.updated_at),
    }


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))
