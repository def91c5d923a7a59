"""Read-only views for dashboards: the market's prices per venue, recent throughput."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from order_engine import metrics
from order_engine.api.responses import JSONResponse
from order_engine.api.routes import ApiKeyId, services_of
from order_engine.domain.orders import OrderStatus
from order_engine.domain.tokens import token_by_mint
from order_engine.market.pool_codec import mints_of, spot_price, venue_of
from order_engine.services import queue_name

router = APIRouter()



def _price_text(price: Fraction, digits: int = 10) -> str:
    with localcontext() as ctx:
        ctx.prec = digits
        value = Decimal(price.numerator) / Decimal(price.denominator)
    return format(value.normalize(), "f")


@router.get("/api/market", tags=["market"])
async def market(request: Request, api_key_id: ApiKeyId) -> JSONResponse:
    """Each pair's mid price (quote per base, before fees) on each venue, and the spread."""
    pools = await services_of(request).chain.get_pools()
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    prices: dict[tuple[str, str], list[Fraction]] = {}
    for pool in pools:
        base, quote = mints_of(pool)
        token_base, token_quote = token_by_mint(base), token_by_mint(quote)
        # Base units to token units: quote per base.
        price = spot_price(pool, base) * Fraction(10**token_base.decimals,
                                                  10**token_quote.decimals)
        pairs.setdefault((base, quote), []).append(
            {"venue": venue_of(pool).value, "pool": pool.pool_id, "price": _price_text(price)}
        )
        prices.setdefault((base, quote), []).append(price)
    body = []
    for (base, quote), venues in pairs.items():
        low, high = min(prices[(base, quote)]), max(prices[(base, quote)])
        spread = (high - low) / low * 10_000 if low > 0 else Fraction(0)
        body.append({
            "pair": f"{token_by_mint(base).symbol}/{token_by_mint(quote).symbol}",
            "base": token_by_mint(base).symbol,
            "quote": token_by_mint(quote).symbol,
            "venues": venues,
            "spreadBps": _price_text(spread, 6),
        })
    return JSONResponse({"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                         "pairs": body})


# Both read only what the window and the in-flight orders hold, through indexes on the key
# (ix_orders_key_finished, ix_orders_key_status_created): never the key's whole history.
_STATS_SQL = text("""
    SELECT date_trunc('minute', updated_at) AS minute,
           count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM updated_at - created_at) * 1000)
               FILTER (WHERE status = 'confirmed') AS p50,
           percentile_cont(0.95) WITHIN GROUP (
               ORDER BY extract(epoch FROM updated_at - created_at) * 1000)
               FILTER (WHERE status = 'confirmed') AS p95
    FROM orders
    WHERE api_key_id = :key AND status IN ('confirmed', 'failed') AND updated_at >= :since
    GROUP BY 1 ORDER BY 1
""")
_IN_FLIGHT_SQL = text("""
    SELECT status, count(*) FROM orders
    WHERE api_key_id = :key AND status = ANY(:statuses)
    GROUP BY 1
""")
_IN_FLIGHT_STATUSES = [status.value for status in OrderStatus if not status.is_terminal]


@router.get("/api/stats", tags=["market"])
async def stats(
    request: Request, api_key_id: ApiKeyId,
    minutes: Annotated[int, Query(ge=1, le=120)] = 10,
) -> JSONResponse:
    """The key's throughput and end-to-end latency per minute, and what is in flight."""
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    async with services_of(request).engine.connect() as conn:
        rows = (await conn.execute(_STATS_SQL, {"key": api_key_id, "since": since})).all()
        status_rows = (await conn.execute(
            _IN_FLIGHT_SQL, {"key": api_key_id, "statuses": _IN_FLIGHT_STATUSES})).all()
    in_flight = {str(row[0]): int(row[1]) for row in status_rows}
    buckets = [
        {"start": r.minute.isoformat().replace("+00:00", "Z"), "confirmed": r.confirmed,
         "failed": r.failed,
         "latencyP50Ms": None if r.p50 is None else round(float(r.p50), 1),
         "latencyP95Ms": None if r.p95 is None else round(float(r.p95), 1)}
        for r in rows
    ]
    finished = {"confirmed": sum(r.confirmed for r in rows),
                "failed": sum(r.failed for r in rows)}
    by_status = {**in_flight, **{s: n for s, n in finished.items() if n}}
    return JSONResponse({"windowMinutes": minutes, "inFlight": sum(in_flight.values()),
                         "byStatus": by_status, "buckets": buckets})


_OPEN_ORDERS_SQL = text(
    "SELECT status, count(*) FROM orders "
    "WHERE status NOT IN ('confirmed', 'failed') GROUP BY 1"  # the partial index's rows
)


# A scrape is made at most once a second and shared meanwhile: it reads PostgreSQL and
# Redis and renders every metric (a few ms), and /metrics needs no key. Scraped 35 times a
# second by one client (within RATE_LIMIT_ANONYMOUS), it took another key's p99 from 13
# to 50 ms; Prometheus scrapes every few seconds.
SCRAPE_MAX_AGE_S = 1.0


class _LatestScrape:
    def __init__(self) -> None:
        self.body = b""
        self.made_at = float("-inf")
        self.lock = asyncio.Lock()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text. Gauges of shared state (queue depth, open orders by status) are
    read at scrape time; counters and histograms are this API process's own (workers
    serve theirs on WORKER_METRICS_PORT)."""
    latest: _LatestScrape | None = getattr(request.app.state, "latest_scrape", None)
    if latest is None:
        latest = request.app.state.latest_scrape = _LatestScrape()
    async with latest.lock:  # one scrape at a time; those waiting take its result
        if time.monotonic() - latest.made_at >= SCRAPE_MAX_AGE_S:
            latest.body = await _scrape(request)
            latest.made_at = time.monotonic()
    return Response(latest.body, media_type=CONTENT_TYPE_LATEST)


async def _scrape(request: Request) -> bytes:
    services = services_of(request)
    with contextlib.suppress(Exception):
        metrics.QUEUE_DEPTH.set(await services.redis.zcard(queue_name(services.settings)))
    with contextlib.suppress(Exception):
        async with services.engine.connect() as conn:
            rows = (await conn.execute(_OPEN_ORDERS_SQL)).all()
        counts: dict[str, int] = {str(r[0]): int(r[1]) for r in rows}
        for status in OrderStatus:
            if not status.is_terminal:
                metrics.OPEN_ORDERS.labels(status.value).set(counts.get(status.value, 0))
    metrics.WEBSOCKETS.set(request.app.state.hub.subscriber_count)
    return generate_latest()
