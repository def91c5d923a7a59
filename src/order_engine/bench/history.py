"""`order-engine bench seed-history` and `bench reads`: a key with months of history, and
what its reads cost at any depth.

The seed writes finished orders (and their events) straight into PostgreSQL with
`generate_series`, as months of trading would have left them: most confirmed, some failed,
one every few seconds going back from now, with time-ordered ids as the service makes
them (store/ids.py). The reads bench then asks the running API for
pages at several depths (the cursor of a page N rows deep is the one the API itself would
have handed out there), for `status`-filtered pages, and for `/api/stats`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg

from order_engine.bench.load import read_response
from order_engine.bench.stats import percentile
from order_engine.store.api_keys import hash_key
from order_engine.store.db import to_libpq_url
from order_engine.store.repository import encode_cursor

# One seeded order every `SPACING_S` seconds back from now: a million span about 58 days.
SPACING_S = 5
FAILED_EVERY = 40  # one order in 40 failed (2.5%)
_SOL = "So11111111111111111111111111111111111111112"
_USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

# Each chunk is one statement and one commit; ids are random, the rest derived from `n`.
_SEED_ORDERS = f"""
INSERT INTO orders (id, api_key_id, type, status, input_mint, output_mint, amount_in,
                    slippage_bps, attempts, expected_amount_out, min_amount_out, amount_out,
                    execution_price, tx_signature, failure_reason, last_seq,
                    created_at, updated_at)
SELECT (lpad(to_hex((extract(epoch FROM t.created_at) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(random()::text), 1, 3) || to_hex(8 + floor(random() * 4)::int)
        || substr(md5(random()::text), 1, 15))::uuid,  -- a UUIDv7, as store/ids.py makes
       $1, 'market',
       CASE WHEN n % {FAILED_EVERY} = 0 THEN 'failed' ELSE 'confirmed' END,
       '{_SOL}', '{_USDC}', 500000000, 100, 1, 75000000, 74625000,
       CASE WHEN n % {FAILED_EVERY} = 0 THEN NULL ELSE 74990000 END,
       CASE WHEN n % {FAILED_EVERY} = 0 THEN NULL ELSE '149.98' END,
       CASE WHEN n % {FAILED_EVERY} = 0 THEN NULL ELSE md5(n::text) END,
       CASE WHEN n % {FAILED_EVERY} = 0 THEN 'slippage exceeded' ELSE NULL END,
       5,
       t.created_at, t.created_at + interval '3 seconds'
FROM generate_series($3::bigint, $4::bigint) AS n,
     LATERAL (SELECT $2::timestamptz - make_interval(secs => n * {SPACING_S})) AS t(created_at)
"""
_SEED_EVENTS = """
INSERT INTO order_events (order_id, seq, status, attempt, payload, created_at)
SELECT o.id, s.seq, s.status, 1, '{}'::jsonb,
       o.created_at + make_interval(secs => s.seq * 0.5)
FROM orders o
CROSS JOIN (VALUES (1, 'pending'), (2, 'routing'), (3, 'building'), (4, 'submitted'))
     AS s(seq, status)
WHERE o.api_key_id = $1 AND o.created_at < $2 AND o.created_at >= $3
UNION ALL
SELECT o.id, 5, o.status, 1, '{}'::jsonb, o.updated_at
FROM orders o WHERE o.api_key_id = $1 AND o.created_at < $2 AND o.created_at >= $3
"""


async def api_key_id_of(conn: asyncpg.Connection, key: str) -> uuid.UUID:
    key_id = await conn.fetchval(
        "SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key))
    if key_id is None:
        raise ValueError("no such API key in this database")
    return key_id  # type: ignore[no-any-return]


async def seed_history(
    database_url: str, key: str, orders: int, *, chunk: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, float | int]:
    """Insert `orders` finished orders of `key` (5 events each), older than any it has."""
    conn = await asyncpg.connect(to_libpq_url(database_url))
    try:
        key_id = await api_key_id_of(conn, key)
        # Below the key's oldest order, so the seeded history never interleaves live orders.
        start = await conn.fetchval(
            "SELECT least(min(created_at), now()) FROM orders WHERE api_key_id = $1", key_id)
        if start is None:
            start = await conn.fetchval("SELECT now()")
        began = time.perf_counter()
        for first in range(1, orders + 1, chunk):
            last = min(first + chunk - 1, orders)
            async with conn.transaction():
                await conn.execute(_SEED_ORDERS, key_id, start, first, last)
                newest = start - timedelta(seconds=first * SPACING_S)
                oldest = start - timedelta(seconds=last * SPACING_S)
                await conn.execute(_SEED_EVENTS, key_id, newest + timedelta(seconds=1), oldest)
            if on_progress is not None:
                on_progress(last - first + 1)
        seconds = time.perf_counter() - began
        await conn.execute("ANALYZE orders")
        await conn.execute("ANALYZE order_events")
        total = await conn.fetchval("SELECT count(*) FROM orders WHERE api_key_id = $1", key_id)
    finally:
        await conn.close()
    return {"seeded_orders": orders, "seconds": round(seconds, 1),
            "key_orders_now": int(total)}


@dataclass(frozen=True)
class ReadCase:
    name: str
    path: str


async def _cursor_at(conn: asyncpg.Connection, key_id: uuid.UUID, depth: int,
                     status: str | None) -> str | None:
    """The cursor the API hands out after the page that ends `depth` rows deep."""
    if depth == 0:
        return None
    row = await conn.fetchrow(
        "SELECT id, created_at FROM orders WHERE api_key_id = $1 "
        "AND ($2::text IS NULL OR status = $2) "
        "ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT 1", key_id, status, depth - 1)
    if row is None:
        return None
    return encode_cursor(row["created_at"], row["id"])


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
               key: str, path: str) -> tuple[int, float]:
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n")
    began = time.perf_counter()
    writer.write(request.encode())
    status, _, _ = await read_response(reader)
    return status, (time.perf_counter() - began) * 1000


async def bench_reads(
    base_url: str, database_url: str, key: str, *, depths: tuple[int, ...],
    repeats: int, limit: int = 100,
) -> list[dict[str, object]]:
    """Each page (by depth, plain and `status=failed`) and `/api/stats`, `repeats` times
    over one keep-alive connection, one request at a time: p50 / p99 / max in ms."""
    conn = await asyncpg.connect(to_libpq_url(database_url))
    try:
        key_id = await api_key_id_of(conn, key)
        cases: list[ReadCase] = []
        for status in (None, "failed"):
            for depth in depths:
                cursor = await _cursor_at(conn, key_id, depth, status)
                if depth and cursor is None:
                    continue  # the key has fewer rows than that
                query = f"limit={limit}" + (f"&status={status}" if status else "")
                query += f"&cursor={cursor}" if cursor else ""
                label = f"page {depth:,} deep" + (f", status={status}" if status else "")
                cases.append(ReadCase(label, f"/api/orders?{query}"))
        cases.append(ReadCase("/api/stats (10 min)", "/api/stats"))
        cases.append(ReadCase("/api/stats (120 min)", "/api/stats?minutes=120"))
    finally:
        await conn.close()
    split = urlsplit(base_url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    rows: list[dict[str, object]] = []
    try:
        for case in cases:
            timings: list[float] = []
            for _ in range(repeats):
                code, ms = await _get(reader, writer, f"{host}:{port}", key, case.path)
                if code != 200:
                    raise RuntimeError(f"{case.name}: HTTP {code}")
                timings.append(ms)
            timings.sort()
            rows.append({"read": case.name, "p50_ms": round(percentile(timings, 50), 2),
                         "p99_ms": round(percentile(timings, 99), 2),
                         "max_ms": round(timings[-1], 2)})
    finally:
        writer.close()
    return rows
