"""Routing quality and cost: our route against the best single venue and the seed's
"max of two venues", for order sizes from small to pool-moving, on the genesis market."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from decimal import Decimal

from order_engine.domain.amounts import format_amount, to_base_units
from order_engine.domain.errors import InsufficientLiquidityError
from order_engine.domain.router import Path, RoutablePool, hop_cost_in, plan_route
from order_engine.domain.tokens import resolve_token
from order_engine.market.config import load_market_config
from order_engine.market.genesis import genesis_pools
from order_engine.market.pool_codec import routable

CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("SOL", "USDC", ("0.1", "10", "100", "1000", "4000")),
    ("USDC", "SOL", ("15", "1500", "150000", "600000")),
    ("JUP", "USDC", ("100", "10000", "200000")),
    ("USDC", "BONK", ("15", "1500", "150000")),  # no direct pool: via SOL (and USDT)
    # Two hops via SOL; the three-hop paths via USDC and SOL cannot pay, so are not quoted.
    ("USDT", "BONK", ("15", "1500")),
    ("BONK", "JUP", ("1000000", "100000000", "10000000000")),  # three hops: SOL, USDC
)


@dataclass(frozen=True, slots=True)
class RoutingRow:
    pair: str
    amount: str
    max_of_two_venues: str | None  # each venue's direct pool, the better one
    best_single_venue: str | None  # best path (of up to three hops) within one venue
    route: str
    legs: int
    hops: int
    gain_vs_max_of_two_bps: float | None
    gain_vs_single_venue_bps: float | None
    route_us_median: float
    route_us_p99: float


def _direct_max(pools: list[RoutablePool], paths: list[Path], amount: int) -> int | None:
    best = None
    for path in paths:
        if len(path.hops) != 1:
            continue
        try:
            out = path.hops[0].pool.quote(path.hops[0].input_mint, amount)
        except InsufficientLiquidityError:
            continue
        best = out if best is None else max(best, out)
    return best


def _bps(better: int, base: int | None) -> float | None:
    return None if not base else round((better - base) / base * 10_000, 2)


def bench_routing(repeats: int = 200) -> list[RoutingRow]:
    pools = [routable(p, 0) for p in genesis_pools(load_market_config(), 0)]
    rows = []
    for symbol_in, symbol_out, amounts in CASES:
        token_in, token_out = resolve_token(symbol_in), resolve_token(symbol_out)
        hop_cost = hop_cost_in(pools, token_out.mint)
        for text in amounts:
            amount = to_base_units(Decimal(text), token_in)
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                plan = plan_route(pools, token_in.mint, token_out.mint, amount, hop_cost)
                timings.append((time.perf_counter() - started) * 1e6)
            paths = list(plan.paths)
            direct = _direct_max(pools, paths, amount)
            single = plan.best_single_venue[1] if plan.best_single_venue else None
            timings.sort()
            rows.append(RoutingRow(
                pair=f"{symbol_in}->{symbol_out}",
                amount=text,
                max_of_two_venues=None if direct is None else format_amount(direct, token_out),
                best_single_venue=None if single is None else format_amount(single, token_out),
                route=format_amount(plan.amount_out, token_out),
                legs=len(plan.legs),
                hops=sum(len(leg.path.hops) for leg in plan.legs),
                gain_vs_max_of_two_bps=_bps(plan.amount_out, direct),
                gain_vs_single_venue_bps=_bps(plan.amount_out, single),
                route_us_median=round(statistics.median(timings), 1),
                route_us_p99=round(timings[int(len(timings) * 0.99) - 1], 1),
            ))
    return rows


def rows_as_dicts(rows: list[RoutingRow]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]



