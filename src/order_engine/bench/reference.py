"""Same-run references for `order-engine bench`: this box's own ceilings, measured in the
same run with the same clients, so that figures taken on different machines can be
compared as ratios rather than as absolute numbers.

- **http**: a bare ASGI app (no FastAPI, no database, no Redis) under uvicorn with the
  API's settings (uvloop, httptools, one process per `processes`, backlog 2048), answering
  `POST /api/orders` with a fixed 201 like ours; loaded by the very same generator
  (`post_orders`) over the same number of connections. What the box gives an HTTP server
  of this stack with nothing behind it.
- **postgres**: single-row `INSERT`s, each its own commit, over `connections` concurrent
  asyncpg connections, into a regular table of a scratch schema (dropped after), with the
  server's own durability settings (reported); then one connection alone for the latency
  of a lone commit.
- **redis**: one-command round trips (`INCR`) with redis-py (the service's client) over
  `connections` connections, then one connection alone.

Each is run alone, one after the other, before the bench's own load.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from order_engine.bench.load import post_orders
from order_engine.bench.stats import percentile

BARE_BODY = (b'{"orderId":"00000000-0000-4000-8000-000000000000","status":"pending",'
             b'"message":"Order queued successfully"}')
_BARE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BARE_BODY)).encode()),
    (b"location", b"/api/orders/00000000-0000-4000-8000-000000000000"),
]


async def bare_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """The whole bare server: read the request's body, answer a fixed 201 (the same
    headers and about the same body as our submit)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 201, "headers": _BARE_HEADERS})
    await send({"type": "http.response.body", "body": BARE_BODY})


def _serve(port: int) -> None:
    """Run the bare app as `order-engine api` runs the API: uvicorn, uvloop, httptools,
    log level warning, backlog 2048, on a SO_REUSEPORT socket (several of these processes
    may share the port, like `up --api-processes N`)."""
    import uvicorn

    from order_engine.api.server import reusable_socket

    config = uvicorn.Config(bare_app, loop="uvloop", http="httptools", log_level="warning",
                            backlog=2048, lifespan="off", interface="asgi3")
    uvicorn.Server(config).run(sockets=[reusable_socket("127.0.0.1", port)])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_listening(port: int, procs: Sequence[asyncio.subprocess.Process],
                          timeout_s: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while True:
        if any(p.returncode is not None for p in procs):
            raise RuntimeError("the bare uvicorn reference server exited at startup")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.perf_counter() > deadline:
                raise RuntimeError("the bare uvicorn reference server did not start") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            # Every process must be listening, not only the first to bind.
            await asyncio.sleep(0.3 if len(procs) > 1 else 0)
            return


async def measure_http(connections: int, seconds: float, processes: int = 1
                       ) -> dict[str, Any]:
    """Requests/s and latency of the bare app under `post_orders`."""
    port = _free_port()
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "order_engine.bench.reference", str(port))
        for _ in range(processes)]
    try:
        await _wait_listening(port, procs)
        result = await post_orders(f"http://127.0.0.1:{port}", "reference", connections,
                                   duration_s=seconds)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    summary = result.summary()
    return {
        "server": f"bare ASGI app, uvicorn (uvloop, httptools), {processes} process(es)",
        "connections": connections,
        "seconds": summary["seconds"],
        "requests_per_s": summary["orders_per_s"],
        "errors": result.errors,
        "latency_ms_p50": summary["latency_ms_p50"],
        "latency_ms_p99": summary["latency_ms_p99"],
    }


@dataclass
class _Drive:
    operations: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return round(percentile(sorted(self.latencies_ms), q), 3)


async def _drive(workers: Sequence[Callable[[], Awaitable[object]]], seconds: float) -> _Drive:
    """Call each worker in a loop, all concurrently, for `seconds`: operations done and the
    latency of each."""
    out = _Drive()
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(operation: Callable[[], Awaitable[object]]) -> None:
        while (sent := time.perf_counter()) < deadline:
            await operation()
            out.latencies_ms.append((time.perf_counter() - sent) * 1000)
            out.operations += 1

    await asyncio.gather(*(loop(w) for w in workers))
    out.seconds = time.perf_counter() - started
    return out


async def measure_postgres(database_url: str, connections: int, seconds: float
                           ) -> dict[str, Any]:
    """Commits/s of single-row INSERTs over `connections` connections (`seconds`), then
    one connection alone (a quarter of that, at least 0.5 s): a lone commit's latency."""
    import asyncpg

    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    schema = f"bench_reference_{uuid.uuid4().hex[:12]}"
    table = f'"{schema}".commits'
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    first = conns[0]
    try:
        settings = {name: await first.fetchval(f"SHOW {name}") for name in
                    ("server_version", "fsync", "synchronous_commit", "wal_sync_method")}
        await first.execute(f'CREATE SCHEMA "{schema}"')
        try:
            await first.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, "
                                "payload text NOT NULL, created_at timestamptz NOT NULL "
                                "DEFAULT now())")
            insert = f"INSERT INTO {table} (payload) VALUES ($1)"
            payload = "x" * 64

            def inserter(conn: Any) -> Callable[[], Awaitable[object]]:
                return lambda: conn.execute(insert, payload)

            for conn in conns:  # prepared once, outside the timed run
                await conn.execute(insert, payload)
            many = await _drive([inserter(c) for c in conns], seconds)
            lone = await _drive([inserter(first)], max(0.5, seconds / 4))
        finally:
            await first.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
    return {
        **settings,
        "connections": connections,
        "seconds": round(many.seconds, 2),
        "commits_per_s": round(many.rate, 1),
        "commit_ms_p50": many.ms(50),
        "commit_ms_p99": many.ms(99),
        "lone_commits_per_s": round(lone.rate, 1),
        "lone_commit_ms_p50": lone.ms(50),
    }


async def measure_redis(redis_url: str, prefix: str, connections: int, seconds: float
                        ) -> dict[str, Any]:
    """Round trips/s of one command (INCR on a key of our own, deleted after) over
    `connections` connections (`seconds`), then one connection alone (a quarter of it)."""
    from redis.asyncio import Redis

    key = f"{prefix}:bench-reference:{uuid.uuid4().hex[:12]}"
    redis = Redis.from_url(redis_url, max_connections=connections)
    try:
        many = await _drive([lambda: redis.incr(key) for _ in range(connections)], seconds)
        lone = await _drive([lambda: redis.incr(key)], max(0.5, seconds / 4))
    finally:
        with contextlib.suppress(Exception):
            await redis.delete(key)
        await redis.aclose()
    return {
        "connections": connections,
        "seconds": round(many.seconds, 2),
        "round_trips_per_s": round(many.rate, 1),
        "round_trip_ms_p50": many.ms(50),
        "round_trip_ms_p99": many.ms(99),
        "lone_round_trip_ms_p50": lone.ms(50),
    }


async def measure_reference(
    *, http_connections: int, seconds: float, database_url: str | None,
    redis_url: str | None, redis_prefix: str = "oe", pg_connections: int = 10,
    http_processes: int = 1,
) -> dict[str, Any]:
    """Every reference this box can give: HTTP always; PostgreSQL and Redis when their
    URL is known (else a note why not). One after the other, each with the box to itself
    (as far as this run goes: the service under test stays up, idle)."""
    reference: dict[str, Any] = {
        "http": await measure_http(http_connections, seconds, http_processes)}
    reference["postgres"] = (
        await measure_postgres(database_url, pg_connections, seconds) if database_url
        else "not measured: no DATABASE_URL / --database-url")
    reference["redis"] = (
        await measure_redis(redis_url, redis_prefix, pg_connections, seconds / 2)
        if redis_url else "not measured: no REDIS_URL / --redis-url")
    return reference


# The figures whose move between the pass before the load and the one after says whether
# the box stayed the same through the run.
HEADLINES = ("http.requests_per_s", "postgres.commits_per_s", "postgres.lone_commit_ms_p50",
             "redis.round_trips_per_s")
DRIFT_WARNING = 0.25


def _mean(x: Any, y: Any) -> Any:
    numbers = (isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y))
    return round((x + y) / 2, 3) if all(numbers) and x != y else x


def bracket(before: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
    """One reference from a pass before the load and one after it: the mean of each
    figure, both passes as measured, and the drift of the headline figures between them
    (|before - after| / their mean). Another session loading the box during the run shows
    as drift: the more of it, the less a ratio to the reference says. Without a pass after
    the load, the pass before it alone."""
    if after is None:
        return {**before, "measured": "before the load"}
    out: dict[str, Any] = {}
    for part, values in before.items():
        other = after.get(part)
        out[part] = ({name: _mean(value, other.get(name)) for name, value in values.items()}
                     if isinstance(values, dict) and isinstance(other, dict) else values)
    drift: dict[str, float] = {}
    for path in HEADLINES:
        x, y = _at(before, path), _at(after, path)
        if x is not None and y is not None and x + y:
            drift[path] = round(abs(x - y) / ((x + y) / 2), 3)
    return {**out, "measured": "mean of a pass before the load and one after it",
            "drift": drift, "passes": {"before": before, "after": after}}


# What each bench's figures are compared with: (our figure, reference figure), both as
# dotted paths into the bench's figures and into the reference.
INGEST_RATIOS = (
    ("orders_per_s", "http.requests_per_s"),
    ("orders_per_s", "postgres.commits_per_s"),
    ("latency_ms_p50", "http.latency_ms_p50"),
    ("latency_ms_p99", "http.latency_ms_p99"),
)
E2E_RATIOS = (
    ("confirmed_per_s", "postgres.commits_per_s"),
    ("confirmed_per_s", "http.requests_per_s"),
    ("ingest.orders_per_s", "http.requests_per_s"),
    ("overhead_ms_p50", "postgres.lone_commit_ms_p50"),
    ("processing_ms_p50", "postgres.lone_commit_ms_p50"),
)
WS_RATIOS = (
    ("delivery_ms_p50", "postgres.lone_commit_ms_p50"),
    ("delivery_ms_p50", "redis.lone_round_trip_ms_p50"),
    ("orders_per_s_sent", "http.requests_per_s"),
)


def _at(figures: dict[str, Any], path: str) -> float | None:
    value: Any = figures
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def ratios(figures: dict[str, Any], reference: dict[str, Any],
           pairs: Sequence[tuple[str, str]]) -> dict[str, float | None]:
    """`"ours / reference": ours ÷ reference` for each pair; None when either side was not
    measured (or the reference is 0)."""
    out: dict[str, float | None] = {}
    for ours, theirs in pairs:
        a, b = _at(figures, ours), _at(reference, theirs)
        out[f"{ours} / {theirs}"] = round(a / b, 3) if a is not None and b else None
    return out


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
