"""The tokens the engine trades, by symbol and by mint address."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    mint: str
    decimals: int
    name: str

    def to_json(self) -> dict[str, object]:
        return {"symbol": self.symbol, "mint": self.mint, "decimals": self.decimals,
                "name": self.name}


# Native SOL is traded as wrapped SOL (the SPL token at this mint); the transaction wraps
# and unwraps it, so for routing and pools the two are the same token.
WSOL_MINT = "So11111111111111111111111111111111111111112"

SOL = Token("SOL", WSOL_MINT, 9, "Solana")
USDC = Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, "USD Coin")
USDT = Token("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6, "Tether USD")
BONK = Token("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, "Bonk")
JUP = Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, "Jupiter")

TOKENS: tuple[Token, ...] = (SOL, USDC, USDT, BONK, JUP)

_BY_KEY: dict[str, Token] = {}
for _token in TOKENS:
    _BY_KEY[_token.symbol.upper()] = _token
    _BY_KEY[_token.mint] = _token
_BY_KEY["WSOL"] = SOL

_BY_MINT: dict[str, Token] = {t.mint: t for t in TOKENS}


class UnknownTokenError(ValueError):
    def __init__(self, value: str) -> None:
        super().__init__(
            f"unknown token {value!r}; supported: {', '.join(supported_symbols())}"
        )
        self.value = value


def supported_symbols() -> list[str]:
    return [t.symbol for t in TOKENS]


def resolve_token(value: str) -> Token:
    """A token by symbol (any case, `WSOL` for wrapped SOL) or by mint address."""
    key = value.strip()
    if not key.isascii():  # symbols and mints are ASCII; "\u017fol".upper() is "SOL"
        raise UnknownTokenError(value)
    token = _BY_KEY.get(key) or _BY_KEY.get(key.upper())
    if token is None:
        raise UnknownTokenError(value)
    return token


def token_by_mint(mint: str) -> Token:
    token = _BY_MINT.get(mint)
    if token is None:
        raise UnknownTokenError(mint)
    return token
