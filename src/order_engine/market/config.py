"""The simulated market's configuration: a TOML file, shipped with defaults."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from order_engine.domain.amm import Venue
from order_engine.domain.tokens import Token, resolve_token

DEFAULT_MARKET_FILE = Path(__file__).with_name("default_market.toml")
CONSTANT_PRODUCT = "constant_product"
DLMM = "dlmm"
DLMM_SHAPES = ("spot", "curve", "bid_ask")


class MarketConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PairConfig:
    base: Token
    quote: Token
    price: Decimal  # quote per base, in token units
    volatility: float  # standard deviation of the log price per second


@dataclass(frozen=True, slots=True)
class PoolConfig:
    venue: Venue
    kind: str
    base: Token
    quote: Token
    base_liquidity: Decimal
    price_offset_pct: Decimal
    fee_bps: int
    bin_step: int
    base_factor: int
    shape: str
    bins_each_side: int

    @property
    def pool_id(self) -> str:
        return f"{self.venue.value}-{self.base.symbol}-{self.quote.symbol}"


@dataclass(frozen=True, slots=True)
class MarketConfig:
    seed: int | None
    tick_seconds: float
    noise_trades_per_pool_per_tick: float
    noise_min_size_pct: float
    noise_max_size_pct: float
    arbitrage_threshold_bps: int
    pairs: tuple[PairConfig, ...]
    pools: tuple[PoolConfig, ...]

    def pair_of(self, pool: PoolConfig) -> PairConfig:
        for pair in self.pairs:
            if (pair.base, pair.quote) == (pool.base, pool.quote):
                return pair
        raise MarketConfigError(f"pool {pool.pool_id} has no [[pairs]] entry")


def _pool(raw: dict[str, Any]) -> PoolConfig:
    kind = raw.get("kind", CONSTANT_PRODUCT)
    if kind not in (CONSTANT_PRODUCT, DLMM):
        raise MarketConfigError(f"pool kind must be {CONSTANT_PRODUCT} or {DLMM}, not {kind}")
    shape = raw.get("shape", "spot")
    if shape not in DLMM_SHAPES:
        raise MarketConfigError(f"DLMM shape must be one of {DLMM_SHAPES}")
    return PoolConfig(
        venue=Venue(raw["venue"]),
        kind=kind,
        base=resolve_token(raw["base"]),
        quote=resolve_token(raw["quote"]),
        base_liquidity=Decimal(str(raw["base_liquidity"])),
        price_offset_pct=Decimal(str(raw.get("price_offset_pct", "0"))),
        fee_bps=int(raw.get("fee_bps", 25)),
        bin_step=int(raw.get("bin_step", 10)),
        base_factor=int(raw.get("base_factor", 10_000)),
        shape=shape,
        bins_each_side=int(raw.get("bins_each_side", 50)),
    )


def load_market_config(path: str | Path | None = None) -> MarketConfig:
    """The file at `path`, $MARKET_CONFIG, or the shipped defaults."""
    source = Path(path or os.environ.get("MARKET_CONFIG") or DEFAULT_MARKET_FILE)
    try:
        raw = tomllib.loads(source.read_text())
        noise, arbitrage = raw.get("noise", {}), raw.get("arbitrage", {})
        config = MarketConfig(
            seed=raw.get("seed"),
            tick_seconds=float(raw.get("tick_seconds", 1.0)),
            noise_trades_per_pool_per_tick=float(noise.get("trades_per_pool_per_tick", 0.5)),
            noise_min_size_pct=float(noise.get("min_size_pct", 0.01)),
            noise_max_size_pct=float(noise.get("max_size_pct", 0.3)),
            arbitrage_threshold_bps=int(arbitrage.get("threshold_bps", 10)),
            pairs=tuple(
                PairConfig(resolve_token(p["base"]), resolve_token(p["quote"]),
                           Decimal(str(p["price"])), float(p["volatility"]))
                for p in raw["pairs"]
            ),
            pools=tuple(_pool(p) for p in raw["pools"]),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise MarketConfigError(f"{source}: {exc}") from exc
    for pool in config.pools:
        config.pair_of(pool)
    return config
