"""Load generators for `order-engine bench ingest | e2e`.

The client speaks HTTP/1.1 over raw asyncio streams with keep-alive and pre-built request
bytes: on a 2-core machine the load generator shares the CPU with the server, and a
general-purpose client (httpx) would measure itself as much as the server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from order_engine.bench.stats import percentile

PAIRS = (("SOL", "USDC", "0.5"), ("USDC", "SOL", "75"), ("SOL", "USDT", "0.4"),
         ("JUP", "USDC", "40"), ("USDC", "USDT", "50"))


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(sorted(self.latencies_ms), q)

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "orders_per_s": round(self.rate, 1),
            "latency_ms_p50": round(self.percentile(50), 2),
            "latency_ms_p90": round(self.percentile(90), 2),
            "latency_ms_p99": round(self.percentile(99), 2),
            "latency_ms_max": round(max(self.latencies_ms, default=0.0), 2),
            "latency_ms_mean": round(statistics.fmean(self.latencies_ms), 2)
            if self.latencies_ms else 0.0,
        }


def order_request(host: str, key: str, index: int) -> bytes:
    token_in, token_out, size = PAIRS[index % len(PAIRS)]
    body = orjson.dumps({"type": "market", "inputToken": token_in, "outputToken": token_out,
                         "amount": size, "slippageBps": 300})
    head = (f"POST /api/orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """A response's status and body, and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return status, await reader.readexactly(length) if length else b"", close


async def post_orders(
    base_url: str, key: str, connections: int, *, duration_s: float | None = None,
    total: int | None = None, on_progress: Callable[[int], None] | None = None,
    on_accepted: Callable[[str], None] | None = None,
    slots: asyncio.Semaphore | None = None, rate: float | None = None,
) -> LoadResult:
    """POST orders over `connections` keep-alive connections, for `duration_s` seconds or
    until `total` orders were acknowledged, whichever is given. With `slots`, each POST
    first takes a slot; a refused order gives it back at once, an accepted one holds it
    until the caller releases it (closed loop: a bounded number of orders in flight).
    With `rate`, the n-th order is sent no sooner than n / rate seconds in (a steady
    flow rather than a flood)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + duration_s if duration_s else float("inf")
    issued = 0

    def take() -> int | None:
        nonlocal issued
        if time.perf_counter() >= deadline or (total is not None and issued >= total):
            return None
        issued += 1
        return issued

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                if slots is not None:
                    await slots.acquire()
                if (index := take()) is None:
                    if slots is not None:
                        slots.release()
                    break
                if rate is not None:
                    await asyncio.sleep(started + (index - 1) / rate - time.perf_counter())
                sent = time.perf_counter()
                writer.write(order_request(f"{host}:{port}", key, index))
                status, body, _ = await read_response(reader)
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                result.requests += 1
                if status == 201:
                    order_id = orjson.loads(body)["orderId"]
                    result.order_ids.append(order_id)
                    if on_accepted is not None:
                        on_accepted(order_id)
                else:
                    result.errors += 1
                    if slots is not None:
                        slots.release()
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{status}: {body[:200]!r}")
                if on_progress is not None:
                    on_progress(1)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class E2eResult:
    submitted: LoadResult
    confirmed: int
    failed: int
    stuck: int
    seconds_to_all_terminal: float
    # One sample per confirmed order: created_at -> updated_at (its confirmation), ms;
    # with SIM_LATENCY_SCALE=0 this is engine overhead. `submitted.latencies_ms` holds
    # the POST latencies. Both are what `bench e2e --plot` draws.
    overhead_ms: list[float]
    # Per confirmed order: from its first pick-up by a worker (the `routing` event) to
    # its confirmation, i.e. without the time it waited in the queue.
    processing_ms: list[float]
    in_flight: int | None  # closed loop: at most this many orders open at once
    landed_ok_per_order: dict[int, int]  # how many orders had 0, 1, 2... successful swaps

    def summary(self) -> dict[str, object]:
        def pct(samples: list[float], q: float) -> float:
            return round(percentile(sorted(samples), q), 2)

        exactly_once = (self.landed_ok_per_order.get(1, 0) == self.confirmed
                        and set(self.landed_ok_per_order) <= {0, 1})
        return {
            "orders": len(self.submitted.order_ids),
            "confirmed": self.confirmed,
            "failed": self.failed,
            "stuck": self.stuck,
            "seconds_to_all_terminal": round(self.seconds_to_all_terminal, 2),
            "confirmed_per_s": round(self.confirmed / self.seconds_to_all_terminal, 1)
            if self.seconds_to_all_terminal else 0.0,
            "in_flight_limit": self.in_flight or "none (flood)",
            "overhead_ms_p50": pct(self.overhead_ms, 50),
            "overhead_ms_p99": pct(self.overhead_ms, 99),
            "processing_ms_p50": pct(self.processing_ms, 50),
            "processing_ms_p99": pct(self.processing_ms, 99),
            "ingest": self.submitted.summary(),
            "swaps_per_order": {str(k): v for k, v in sorted(self.landed_ok_per_order.items())},
            "exactly_once": exactly_once,
        }


async def run_e2e(base_url: str, key: str, database_url: str, orders: int, connections: int,
                  timeout_s: float = 600, in_flight: int | None = None,
                  on_progress: Callable[[int], None] | None = None) -> E2eResult:
    """Submit `orders` as fast as possible (or, with `in_flight`, keeping at most that many
    open at once: a new one as soon as one is terminal), then wait until every one is
    terminal; read the outcome from PostgreSQL (orders, their events and the chain's
    ledger). Run the service with SIM_LATENCY_SCALE=0: then an order's whole end-to-end
    time is engine overhead."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    slots = asyncio.Semaphore(in_flight) if in_flight else None
    open_ids: set[str] = set()
    submitting = True

    async def release_terminal() -> None:
        # One query for every open order (not a poll per order): frees their slots.
        while submitting:
            if open_ids:
                done = await conn.fetch(
                    "SELECT id::text FROM orders WHERE id = ANY($1::uuid[]) "
                    "AND status IN ('confirmed', 'failed')", list(open_ids))
                for row in done:
                    open_ids.discard(row["id"])
                    assert slots is not None
                    slots.release()
            await asyncio.sleep(0.01)

    try:
        started = time.perf_counter()
        releaser = asyncio.create_task(release_terminal()) if slots is not None else None
        submitted = await post_orders(
            base_url, key, min(connections, in_flight or connections), total=orders,
            on_progress=on_progress, slots=slots,
            on_accepted=open_ids.add if slots is not None else None)
        submitting = False
        if releaser is not None:
            await releaser
        ids = submitted.order_ids
        deadline = time.perf_counter() + timeout_s
        while True:
            open_orders = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]) "
                "AND status NOT IN ('confirmed', 'failed')", ids)
            if open_orders == 0 or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        rows = await conn.fetch(
            "SELECT o.id::text, o.status, "
            "extract(epoch FROM o.updated_at - o.created_at) * 1000 AS ms, "
            "extract(epoch FROM o.updated_at - (SELECT min(e.created_at) FROM order_events e "
            "WHERE e.order_id = o.id AND e.status = 'routing')) * 1000 AS processing_ms "
            "FROM orders o WHERE o.id = ANY($1::uuid[])", ids)
        swaps = await conn.fetch(
            "SELECT split_part(memo, ':', 2) AS order_id, count(*) AS n "
            "FROM chain.transactions WHERE err IS NULL AND memo LIKE 'order-engine:%' "
            "AND split_part(memo, ':', 2) = ANY($1::text[]) GROUP BY 1", ids)
    finally:
        await conn.close()
    per_order = {r["order_id"]: int(r["n"]) for r in swaps}
    histogram: dict[int, int] = {}
    for order_id in ids:
        n = per_order.get(order_id, 0)
        histogram[n] = histogram.get(n, 0) + 1
    statuses = [r["status"] for r in rows]
    return E2eResult(
        submitted=submitted,
        confirmed=statuses.count("confirmed"),
        failed=statuses.count("failed"),
        stuck=len(ids) - statuses.count("confirmed") - statuses.count("failed"),
        seconds_to_all_terminal=elapsed,
        overhead_ms=[float(r["ms"]) for r in rows if r["status"] == "confirmed"],
        processing_ms=[float(r["processing_ms"]) for r in rows
                       if r["status"] == "confirmed" and r["processing_ms"] is not None],
        in_flight=in_flight,
        landed_ok_per_order=histogram,
    )
