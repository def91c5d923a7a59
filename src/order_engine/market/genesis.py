"""The default market: which pools exist at genesis, their prices and depth."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from order_engine.domain.amm import FeeRounding, Venue
from order_engine.domain.tokens import BONK, JUP, SOL, USDC, USDT, Token


@dataclass(frozen=True, slots=True)
class PoolSpec:
    venue: Venue
    base: Token
    quote: Token
    price: Decimal  # quote per base, in token units
    base_liquidity: Decimal  # base tokens in the pool
    fee_numerator: int
    fee_denominator: int
    fee_rounding: FeeRounding

    @property
    def pool_id(self) -> str:
        return f"{self.venue.value}-{self.base.symbol}-{self.quote.symbol}"

    @property
    def reserve_base(self) -> int:
        return int(self.base_liquidity.scaleb(self.base.decimals))

    @property
    def reserve_quote(self) -> int:
        return int((self.base_liquidity * self.price).scaleb(self.quote.decimals))


def _raydium(base: Token, quote: Token, price: str, depth: str) -> PoolSpec:
    # Raydium AMM v4: 0.25% fee (25/10000), rounded up.
    return PoolSpec(Venue.RAYDIUM, base, quote, Decimal(price), Decimal(depth), 25, 10_000,
                    FeeRounding.UP)


def _meteora(base: Token, quote: Token, price: str, depth: str, fee_bps: int) -> PoolSpec:
    # Meteora dynamic AMM: a per-pool fee tier, rounded down.
    return PoolSpec(Venue.METEORA, base, quote, Decimal(price), Decimal(depth), fee_bps,
                    10_000, FeeRounding.DOWN)


# Meteora's prices sit 0.2-2.5% away from Raydium's and its pools are shallower, so which
# venue wins depends on the pair, the direction and the size of the order.
DEFAULT_POOLS: tuple[PoolSpec, ...] = (
    _raydium(SOL, USDC, "150", "20000"),
    _meteora(SOL, USDC, "151.2", "8000", 30),
    _raydium(SOL, USDT, "150.1", "8000"),
    _meteora(SOL, USDT, "148.3", "5000", 25),
    _raydium(USDC, USDT, "1.0002", "5000000"),
    _meteora(USDC, USDT, "0.998", "10000000", 5),
    _raydium(BONK, SOL, "0.000000133", "150000000000"),
    _meteora(BONK, SOL, "0.0000001297", "50000000000", 40),
    _raydium(JUP, USDC, "0.80", "2000000"),
    _meteora(JUP, USDC, "0.812", "1000000", 30),
)
