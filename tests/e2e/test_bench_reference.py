"""The same-run reference of `order-engine bench`: a real bare uvicorn subprocess under the
load generator, real PostgreSQL commits and Redis round trips, briefly."""

from __future__ import annotations

import asyncpg
import pytest
from redis.asyncio import Redis

from order_engine.bench.reference import INGEST_RATIOS, measure_reference, ratios

pytestmark = pytest.mark.e2e


async def test_reference_measures_every_ceiling_and_leaves_nothing_behind(
    database_url: str, redis_url: str
) -> None:
    prefix = "oe-test-reference"
    reference = await measure_reference(
        http_connections=4, seconds=1.0, database_url=database_url, redis_url=redis_url,
        redis_prefix=prefix, pg_connections=3)

    http, postgres, redis = reference["http"], reference["postgres"], reference["redis"]
    assert http["requests_per_s"] > 0
    assert http["errors"] == 0
    assert http["connections"] == 4
    assert postgres["commits_per_s"] > 0
    assert postgres["lone_commit_ms_p50"] > 0
    assert postgres["connections"] == 3
    assert postgres["fsync"] in ("on", "off")  # the server's own settings, reported
    assert redis["round_trips_per_s"] > 0
    assert redis["lone_round_trip_ms_p50"] > 0

    ours = {"orders_per_s": 100.0, "latency_ms_p50": 2.0, "latency_ms_p99": 5.0}
    vs = ratios(ours, reference, INGEST_RATIOS)
    assert vs["orders_per_s / http.requests_per_s"] == round(
        100.0 / http["requests_per_s"], 3)
    assert all(value is not None and value > 0 for value in vs.values()), vs

    # The scratch schema was dropped and the Redis key deleted.
    conn = await asyncpg.connect(database_url)
    try:
        assert not await conn.fetchval("SELECT count(*) FROM information_schema.schemata "
                                       "WHERE schema_name LIKE 'bench_reference_%'")
    finally:
        await conn.close()
    client = Redis.from_url(redis_url)
    try:
        assert [key async for key in client.scan_iter(match=f"{prefix}:*")] == []
    finally:
        await client.aclose()


async def test_without_database_or_redis_the_http_reference_is_still_measured() -> None:
    reference = await measure_reference(http_connections=2, seconds=0.5, database_url=None,
                                        redis_url=None)
    assert reference["http"]["requests_per_s"] > 0
    assert "not measured" in reference["postgres"]
    vs = ratios({"orders_per_s": 10.0}, reference,
                (("orders_per_s", "postgres.commits_per_s"),
                 ("orders_per_s", "http.requests_per_s")))
    assert vs["orders_per_s / postgres.commits_per_s"] is None
    assert vs["orders_per_s / http.requests_per_s"] is not None
