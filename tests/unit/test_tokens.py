"""Tokens: a client may name a token by symbol (any case) or by its mint address."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from order_engine.domain.tokens import (
    BONK,
    JUP,
    SOL,
    TOKENS,
    USDC,
    USDT,
    WSOL_MINT,
    Token,
    UnknownTokenError,
    resolve_token,
    supported_symbols,
    token_by_mint,
)

# The real mainnet mint addresses and decimals, written out independently of the module.
MAINNET = [
    (SOL, "SOL", "So11111111111111111111111111111111111111112", 9),
    (USDC, "USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6),
    (USDT, "USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6),
    (BONK, "BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5),
    (JUP, "JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6),
]


@pytest.mark.parametrize(("token", "symbol", "mint", "decimals"), MAINNET)
def test_tokens_carry_the_real_mint_and_decimals(
    token: Token, symbol: str, mint: str, decimals: int
) -> None:
    assert (token.symbol, token.mint, token.decimals) == (symbol, mint, decimals)
    assert token.to_json() == {
        "symbol": symbol, "mint": mint, "decimals": decimals, "name": token.name,
    }


def test_supported_symbols_are_the_five_tokens_in_order() -> None:
    assert supported_symbols() == ["SOL", "USDC", "USDT", "BONK", "JUP"]
    assert [t.symbol for t in TOKENS] == supported_symbols()


@pytest.mark.parametrize(("token", "symbol", "mint", "decimals"), MAINNET)
def test_resolve_by_mint_address(token: Token, symbol: str, mint: str, decimals: int) -> None:
    assert resolve_token(mint) is token
    assert token_by_mint(mint) is token


@given(token=st.sampled_from(TOKENS), data=st.data())
def test_resolve_by_symbol_in_any_case(token: Token, data: st.DataObject) -> None:
    upper = data.draw(st.lists(st.booleans(), min_size=len(token.symbol),
                               max_size=len(token.symbol)))
    spelled = "".join(c.upper() if u else c.lower() for c, u in zip(token.symbol, upper,
                                                                       strict=True))
    assert resolve_token(spelled) is token


@pytest.mark.parametrize("value", ["sol", "Sol", "SOL", " sol ", "\tSOL\n"])
def test_resolve_ignores_surrounding_whitespace_and_case(value: str) -> None:
    assert resolve_token(value) is SOL


@pytest.mark.parametrize("value", ["WSOL", "wsol", "wSol", WSOL_MINT])
def test_wrapped_sol_is_sol(value: str) -> None:
    assert resolve_token(value) is SOL


@pytest.mark.parametrize(
    "value",
    [
        "DOGE",
        "",
        "   ",
        "SOLANA",
        "US DC",
        # Base58 is case-sensitive: a mangled address must not resolve to some token.
        USDC.mint.lower(),
        USDC.mint.upper(),
        USDC.mint[:-1],
    ],
)
def test_unknown_token_names_the_supported_symbols(value: str) -> None:
    with pytest.raises(UnknownTokenError) as caught:
        resolve_token(value)
    assert str(caught.value) == (
        f"unknown token {value!r}; supported: SOL, USDC, USDT, BONK, JUP"
    )
    assert caught.value.value == value
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", ["SOL", "WSOL", "usdc", "nope"])
def test_token_by_mint_accepts_only_mint_addresses(value: str) -> None:
    with pytest.raises(UnknownTokenError, match="supported: SOL, USDC, USDT, BONK, JUP"):
        token_by_mint(value)


@pytest.mark.parametrize(
    "lookalike", ["\u017fol", "\u017fOL", "u\u017fdc", "SOL\u200b", "\uff33\uff2f\uff2c"])
def test_a_non_ascii_lookalike_of_a_symbol_is_unknown(lookalike: str) -> None:
    """In Python the long s upper-cases to S ("\u017fol".upper() == "SOL"): such a
    lookalike must not pass for SOL."""
    with pytest.raises(UnknownTokenError):
        resolve_token(lookalike)
