"""Exact token amounts: decimal strings at the edges, integer base units inside."""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext

from order_engine.domain.tokens import Token


class AmountError(ValueError):
    pass


# Plain ASCII decimal notation, optionally with an exponent (JSON numbers such as 1e-07);
# no underscores, no non-ASCII digits, which Decimal() alone would accept.
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = {"nan", "snan", "inf", "infinity"}
# Far beyond any token amount, and small enough that no arithmetic on it is slow.
MIN_EXPONENT, MAX_EXPONENT = -64, 64


def parse_amount(value: object) -> Decimal:
    """A positive finite decimal from a JSON string or number (never via binary float math)."""
    if isinstance(value, bool) or value is None:
        raise AmountError("must be a decimal string or number")
    if isinstance(value, float):
        # JSON numbers arrive as floats; their shortest repr is the literal the client sent.
        value = repr(value)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise AmountError("must be a decimal string or number")
    text = value.strip()
    if not text or len(text) > 64:
        raise AmountError("must be a decimal string of at most 64 characters")
    if text.lower().lstrip("+-") in _NON_FINITE:
        raise AmountError("must be a finite number")
    if not _DECIMAL.fullmatch(text):
        raise AmountError(f"{value!r} is not a decimal number")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise AmountError(f"{value!r} is not a decimal number") from None
    if amount <= 0:
        raise AmountError("must be greater than 0")
    if not MIN_EXPONENT <= amount.adjusted() <= MAX_EXPONENT:
        raise AmountError("is out of range")
    return amount


def to_base_units(amount: Decimal, token: Token) -> int:
    """Token units to integer base units; refuses more fractional digits than the token has."""
    with localcontext() as ctx:
        # Wide enough for any amount parse_amount lets through, so nothing here rounds.
        ctx.prec = 200
        scaled = amount.scaleb(token.decimals)
        if scaled != scaled.to_integral_value():
            raise AmountError(f"{token.symbol} has at most {token.decimals} decimal places")
        return int(scaled)


def from_base_units(units: int, token: Token) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        return Decimal(units).scaleb(-token.decimals)


def format_amount(units: int, token: Token) -> str:
    """Base units as a plain decimal string in token units, without exponent or trailing zeros."""
    text = format(from_base_units(units, token), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


PRICE_DIGITS = 18


def execution_price(amount_in: int, token_in: Token, amount_out: int, token_out: Token) -> str:
    """Output per unit of input, in token units, truncated to 18 significant digits."""
    if amount_in <= 0:
        raise AmountError("amount in must be positive")
    with localcontext() as ctx:
        ctx.prec = PRICE_DIGITS
        ctx.rounding = ROUND_DOWN
        price = from_base_units(amount_out, token_out) / from_base_units(amount_in, token_in)
    text = format(price, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
