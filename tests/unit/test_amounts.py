"""Amounts: decimal strings at the API edge, exact integer base units inside."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from order_engine.domain.amounts import (
    PRICE_DIGITS,
    AmountError,
    execution_price,
    format_amount,
    from_base_units,
    parse_amount,
    to_base_units,
)
from order_engine.domain.tokens import BONK, JUP, SOL, TOKENS, USDC, USDT, Token

tokens = st.sampled_from(TOKENS)
# Every formatted amount below 10**63 base units fits the 64 characters parse_amount allows.
base_units = st.integers(min_value=1, max_value=10**63 - 1)
# Digits, then optionally a point and a fraction that does not end in 0: no exponent.
PLAIN_DECIMAL = re.compile(r"\d+(\.\d*[1-9])?")


# --- parse_amount -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", Decimal("1.5")),
        ("0.000000001", Decimal("0.000000001")),
        ("  42  ", Decimal("42")),
        ("1e3", Decimal("1000")),
        ("1" * 64, Decimal("1" * 64)),
        (7, Decimal(7)),
        (10**63, Decimal(10**63)),
        # JSON numbers arrive as floats; the literal the client typed is kept, not 0.1000000...
        (0.1, Decimal("0.1")),
        (2.675, Decimal("2.675")),
        (1e-7, Decimal("1E-7")),
        (1e20, Decimal("1E+20")),
    ],
)
def test_parse_amount_accepts_decimal_strings_and_numbers(
    value: object, expected: Decimal
) -> None:
    # Decimal equality is exact: Decimal(0.1) (the binary float) would not equal Decimal("0.1").
    assert parse_amount(value) == expected


@given(st.floats(min_value=1e-60, max_value=1e60, allow_infinity=False, allow_nan=False))
def test_parse_amount_of_a_float_is_its_shortest_literal(value: float) -> None:
    parsed = parse_amount(value)
    assert parsed == Decimal(repr(value))
    assert float(parsed) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "decimal string or number"),
        (False, "decimal string or number"),
        (None, "decimal string or number"),
        (["1"], "decimal string or number"),
        ({"amount": "1"}, "decimal string or number"),
        (Decimal("1"), "decimal string or number"),
        ("", "at most 64 characters"),
        ("   ", "at most 64 characters"),
        ("1" * 65, "at most 64 characters"),
        ("0." + "0" * 62 + "1", "at most 64 characters"),
        (10**64, "at most 64 characters"),
        ("abc", "not a decimal number"),
        ("1.2.3", "not a decimal number"),
        ("1,5", "not a decimal number"),
        ("0x10", "not a decimal number"),
        ("NaN", "finite"),
        ("sNaN", "finite"),
        ("Infinity", "finite"),
        ("-inf", "finite"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("0", "greater than 0"),
        ("0.000", "greater than 0"),
        ("-0", "greater than 0"),
        ("-1.5", "greater than 0"),
        (0, "greater than 0"),
        (-3, "greater than 0"),
        (0.0, "greater than 0"),
        (-0.5, "greater than 0"),
    ],
)
def test_parse_amount_rejects(value: object, message: str) -> None:
    with pytest.raises(AmountError, match=message):
        parse_amount(value)


# --- base units -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "token", "units"),
    [
        ("1", SOL, 1_000_000_000),
        ("1.5", SOL, 1_500_000_000),
        ("0.000000001", SOL, 1),
        ("123.456789", USDC, 123_456_789),
        ("0.000001", USDT, 1),
        ("1.00000", BONK, 100_000),
        ("0.00001", BONK, 1),
        ("2e3", JUP, 2_000_000_000),
        ("1" * 40, SOL, int("1" * 40) * 10**9),
    ],
)
def test_to_base_units_is_exact(text: str, token: Token, units: int) -> None:
    assert to_base_units(parse_amount(text), token) == units
    assert from_base_units(units, token) == Decimal(text)


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("0.0000000001", SOL),
        ("1.0000001", USDC),
        ("0.0000001", USDT),
        ("0.000001", BONK),
        ("1.1234567", JUP),
    ],
)
def test_to_base_units_refuses_more_decimals_than_the_token_has(text: str, token: Token) -> None:
    with pytest.raises(AmountError, match=f"{token.symbol} has at most {token.decimals}"):
        to_base_units(parse_amount(text), token)


@given(
    units=st.integers(min_value=0, max_value=10**18),
    extra=st.integers(min_value=1, max_value=9),
    token=tokens,
)
def test_to_base_units_refuses_one_digit_too_many(units: int, extra: int, token: Token) -> None:
    # e.g. SOL: 1.5 + 0.0000000003 = 1.5000000003 (10 decimal places)
    amount = from_base_units(units, token) + Decimal(extra).scaleb(-token.decimals - 1)
    with pytest.raises(AmountError, match="decimal places"):
        to_base_units(amount, token)


@pytest.mark.parametrize(
    "text",
    [
        # More than 28 significant digits: the default Decimal precision must not round these
        # to 1 before the check and then silently truncate to 0.999999999 SOL.
        "0.99999999999999999999999999999",
        "1.0000000000000000000000000001",
        "12345678901234567890.0000000001",
    ],
)
def test_to_base_units_refuses_excess_decimals_in_long_amounts(text: str) -> None:
    with pytest.raises(AmountError, match="SOL has at most 9 decimal places"):
        to_base_units(parse_amount(text), SOL)


@given(units=base_units, token=tokens)
def test_format_then_parse_round_trips_to_the_same_units(units: int, token: Token) -> None:
    assert to_base_units(parse_amount(format_amount(units, token)), token) == units


@given(units=st.integers(min_value=0, max_value=10**70), token=tokens)
def test_format_amount_is_plain_decimal_without_trailing_zeros(units: int, token: Token) -> None:
    text = format_amount(units, token)
    assert PLAIN_DECIMAL.fullmatch(text), text
    assert Decimal(text) == Fraction(units, 10**token.decimals)


@pytest.mark.parametrize(
    ("units", "token", "text"),
    [
        (0, SOL, "0"),
        (1, SOL, "0.000000001"),
        (1_000_000_000, SOL, "1"),
        (1_500_000_000, SOL, "1.5"),
        (10**20, SOL, "100000000000"),
        (150_250_000, USDC, "150.25"),
        (1, BONK, "0.00001"),
        (123_400_000, JUP, "123.4"),
    ],
)
def test_format_amount_examples(units: int, token: Token, text: str) -> None:
    assert format_amount(units, token) == text


# --- execution_price --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("amount_in", "token_in", "amount_out", "token_out", "price"),
    [
        # 1 SOL -> 150.25 USDC
        (1_000_000_000, SOL, 150_250_000, USDC, "150.25"),
        # 3 USDC -> 1 USDT: 1/3, 18 significant digits
        (3_000_000, USDC, 1_000_000, USDT, "0.333333333333333333"),
        # 3 USDC -> 2 USDT: 0.666...|6 truncates to ...666, never rounds to ...667
        (3_000_000, USDC, 2_000_000, USDT, "0.666666666666666666"),
        # 7 USDC -> 5 JUP: 0.714285714285714285|714 truncates
        (7_000_000, USDC, 5_000_000, JUP, "0.714285714285714285"),
        # 2 SOL -> 0.000001 USDC: tiny price, no exponent
        (2_000_000_000, SOL, 2, USDC, "0.000001"),
        # 0.00001 BONK -> 1 SOL: huge price, no exponent
        (1, BONK, 1_000_000_000, SOL, "100000"),
        # 3 BONK base units -> 2 SOL base units: 2e-9 / 3e-5 = 0.0000666...
        (3, BONK, 2, SOL, "0.0000666666666666666666"),
    ],
)
def test_execution_price_examples(
    amount_in: int, token_in: Token, amount_out: int, token_out: Token, price: str
) -> None:
    assert execution_price(amount_in, token_in, amount_out, token_out) == price


@given(
    amount_in=st.integers(min_value=1, max_value=10**20),
    amount_out=st.integers(min_value=0, max_value=10**20),
    token_in=tokens,
    token_out=tokens,
)
def test_execution_price_is_truncated_never_rounded_up(
    amount_in: int, token_in: Token, amount_out: int, token_out: Token
) -> None:
    text = execution_price(amount_in, token_in, amount_out, token_out)
    assert "e" not in text.lower()
    exact = Fraction(amount_out * 10**token_in.decimals, amount_in * 10**token_out.decimals)
    shown = Decimal(text)
    assert Fraction(shown) <= exact
    if shown:
        assert len(shown.normalize().as_tuple().digits) <= PRICE_DIGITS
        last_digit = Fraction(10) ** (shown.adjusted() - PRICE_DIGITS + 1)
        assert exact - Fraction(shown) < last_digit
    else:
        assert exact == 0


@pytest.mark.parametrize("amount_in", [0, -1])
def test_execution_price_needs_a_positive_input(amount_in: int) -> None:
    with pytest.raises(AmountError, match="positive"):
        execution_price(amount_in, SOL, 1, USDC)


@pytest.mark.parametrize("text", ["1e999999", "1e-999999", "1_000", "١٢", "0x10", "1,5"])
def test_parse_amount_refuses_what_decimal_alone_would_take(text: str) -> None:
    # Absurd exponents would make later arithmetic slow or overflow; underscores and
    # non-ASCII digits are not how anyone writes an amount on purpose.
    with pytest.raises(AmountError):
        parse_amount(text)
