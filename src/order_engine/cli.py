"""`order-engine`: run the service, manage keys, submit and watch orders."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from order_engine.config import Settings, get_settings
from order_engine.supervisor import DEV_KEY_FILE

if TYPE_CHECKING:
    from order_engine.store.api_keys import ApiKeyStore, KeyInfo

T = TypeVar("T")

app = typer.Typer(
    help="Order execution engine for Solana swaps.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
bench_app = typer.Typer(help="Measure the engine (figures go to BENCHMARKS.md).",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
err_console = Console(stderr=True)



def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _require_urls(settings: Settings) -> None:
    if not settings.database_url or not settings.redis_url:
        raise _fail("DATABASE_URL and REDIS_URL must be set for this command "
                    "(`order-engine up` starts embedded servers instead)")


# --- running the service --------------------------------------------------------------


@app.command()
def api() -> None:
    """Run the HTTP/WebSocket API (uvicorn) on $PORT.

    Example: [cyan]DATABASE_URL=postgresql://... REDIS_URL=redis://... PORT=3000 order-engine api[/]
    """
    from order_engine.api.server import api_server, reusable_socket
    from order_engine.logs import configure_logging

    settings = get_settings()
    _require_urls(settings)
    configure_logging(settings.log_level)
    server = api_server(settings, loop="uvloop", log_level="warning",
                        backlog=2048)
    if settings.api_reuse_port:
        server.run(sockets=[reusable_socket(settings.host, settings.port)])
    else:
        server.run()


@app.command()
def worker() -> None:
    """Run one worker: takes orders from the queue and executes them.

    Example: [cyan]WORKER_CONCURRENCY=20 WORKER_METRICS_PORT=9101 order-engine worker[/]
    """
    from order_engine.logs import configure_logging
    from order_engine.worker.runner import run_worker

    settings = get_settings()
    _require_urls(settings)
    configure_logging(settings.log_level)
    run_worker(settings)


@app.command()
def market(
    seed: Annotated[int | None, typer.Option(help="Seed (default: the config file's).")] = None,
) -> None:
    """Run the market simulator: prices walk, noise traders trade, arbitrageurs trade pools
    back toward the reference prices. Configured by $MARKET_CONFIG (default: the shipped
    default_market.toml).

    Example: [cyan]MARKET_CONFIG=my_market.toml order-engine market --seed 42[/]
    """
    from order_engine.logs import configure_logging
    from order_engine.market.runner import run_market

    settings = get_settings()
    if not settings.database_url:
        raise _fail("DATABASE_URL must be set")
    configure_logging(settings.log_level)
    asyncio.run(run_market(settings, seed))


@app.command()
def migrate() -> None:
    """Apply the database migrations and create the simulated market's pools.

    Example: [cyan]DATABASE_URL=postgresql://postgres@127.0.0.1:5432/orders order-engine migrate[/]
    """
    from order_engine.migrate import seed_chain, upgrade_database

    settings = get_settings()
    if not settings.database_url:
        raise _fail("DATABASE_URL must be set")
    upgrade_database(settings.database_url)
    asyncio.run(seed_chain(settings))
    console.print("[green]database is up to date[/]")


@app.command()
def up(
    workers: Annotated[int, typer.Option(help="Worker processes to start.")] = 1,
    market: Annotated[bool, typer.Option(help="Run the market simulator too.")] = True,
    api_processes: Annotated[int, typer.Option(min=1, help="API processes (one port).")] = 1,
) -> None:
    """Start everything: embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL are
    set), migrations, the API, the workers and the market simulator. Ctrl-C stops it all.

    Example: [cyan]order-engine up --workers 2[/]
    """
    from order_engine.supervisor import run_stack

    sys.exit(run_stack(get_settings(), workers, market, api_processes))


def _key_store_run(settings: Settings, work: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    """Run `work` with a key store on the settings' database."""
    from order_engine.store.api_keys import ApiKeyStore
    from order_engine.store.db import create_engine, session_factory

    if not settings.database_url:
        raise _fail("DATABASE_URL must be set")

    async def run() -> T:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await work(ApiKeyStore(session_factory(engine)))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
) -> None:
    """Create an API key and print it (it is shown only once; the database keeps a hash).
    Keys are "oe_" and 256 random bits.

    Example: [cyan]order-engine keys create --name trading-bot[/]
    """
    async def create(store: ApiKeyStore) -> str:
        key, _ = await store.create(name)
        return key

    console.print(_key_store_run(get_settings(), create))


@keys_app.command("list")
def keys_list(
    all_: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
) -> None:
    """List the API keys: id, name, the first characters of the key, when made, and
    whether revoked (or the bootstrap key). The keys themselves are not kept.

    Example: [cyan]order-engine keys list --all[/]
    """
    from rich.table import Table

    async def read(store: ApiKeyStore) -> list[KeyInfo]:
        return await store.all()

    keys = [k for k in _key_store_run(get_settings(), read) if all_ or k.revoked_at is None]
    table = Table(title=f"API keys ({len(keys)})")
    table.add_column("id", no_wrap=True, min_width=36)  # whole: `keys revoke` takes it
    for column in ("name", "starts with", "created", "revoked"):
        table.add_column(column)
    for k in keys:
        name = f"{k.name} (bootstrap)" if k.bootstrap and k.name != "bootstrap" else k.name
        table.add_row(str(k.id), name, f"{k.prefix}...", f"{k.created_at:%Y-%m-%d %H:%M}",
                      "" if k.revoked_at is None else f"{k.revoked_at:%Y-%m-%d %H:%M}")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_ref: Annotated[str, typer.Argument(
        metavar="KEY", help="The key's id (or its first 8+ characters), the prefix "
                            "`keys list` shows, or the key itself.")],
) -> None:
    """Revoke an API key: every request with it gets 401 ("this API key was revoked")
    and its WebSockets close with 4401. Its orders and their events stay. Every API
    process hears of it at once over Redis (when REDIS_URL is set); one that misses the
    message stops accepting the key within 30 s all the same.

    Example: [cyan]order-engine keys revoke 3f2a9c1e[/]
    """
    from order_engine.api.auth import CACHE_TTL_S

    settings = get_settings()

    async def find(store: ApiKeyStore) -> list[KeyInfo]:
        return await store.find(key_ref)

    matches = _key_store_run(settings, find)
    if not matches:
        raise _fail(f"no API key matches {key_ref!r} (see `order-engine keys list --all`)")
    if len(matches) > 1:
        listed = "\n".join(f"  {k.id}  {k.name}  {k.prefix}..." for k in matches)
        raise _fail(f"{len(matches)} API keys match {key_ref!r}; give the id:\n{listed}")
    target = matches[0]
    if target.revoked_at is not None:
        console.print(f"key {target.id} ({target.name}, {target.prefix}...) was already "
                      f"revoked at {target.revoked_at:%Y-%m-%d %H:%M:%S %Z}")
        return

    async def revoke(store: ApiKeyStore) -> KeyInfo | None:
        return await store.revoke(target.id)

    revoked = _key_store_run(settings, revoke)
    if revoked is None:
        raise _fail(f"the key {target.id} is gone")
    console.print(f"revoked key {revoked.id} ({revoked.name}, {revoked.prefix}...)")
    heard = _announce_revoked(settings, revoked.id)
    if heard is None:
        err_console.print(f"[yellow]not announced on Redis (REDIS_URL unset or not "
                          f"answering): API processes refuse the key within "
                          f"{CACHE_TTL_S:.0f} s[/]")
    else:
        console.print(f"{heard} API process(es) told at once; any other refuses the key "
                      f"within {CACHE_TTL_S:.0f} s")


def _announce_revoked(settings: Settings, key_id: uuid.UUID) -> int | None:
    """Publish the revocation to the API processes; how many heard it (None: not sent)."""
    if not settings.redis_url:
        return None
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from order_engine.events import publish_revoked

    async def announce() -> int:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5,
                               socket_timeout=5)
        try:
            return await publish_revoked(redis, settings.redis_prefix, [key_id])
        finally:
            await redis.aclose()

    try:
        return asyncio.run(announce())
    except (RedisError, OSError) as exc:
        err_console.print(f"[yellow]Redis: {exc}[/]")
        return None


@bench_app.command("routing")
def bench_routing_command(
    repeats: Annotated[int, typer.Option(help="Timed runs per case.")] = 200,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
) -> None:
    """Our route against the best single venue and the seed's "max of two venues", for
    sizes from small to pool-moving, on the genesis market; and how long routing takes.

    Example: [cyan]order-engine bench routing --json routing.json[/]
    """
    from rich.table import Table

    from order_engine.bench.routing import bench_routing, rows_as_dicts

    rows = bench_routing(repeats)
    table = Table(title="Routing on the genesis market")
    for column in ("pair", "amount in", "max of two venues", "best single venue", "our route",
                   "legs/hops", "vs max of two", "vs single venue", "time p50 / p99"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.pair, r.amount, r.max_of_two_venues or "no pool", r.best_single_venue or "-",
            r.route, f"{r.legs}/{r.hops}",
            "-" if r.gain_vs_max_of_two_bps is None else f"+{r.gain_vs_max_of_two_bps} bps",
            "-" if r.gain_vs_single_venue_bps is None else f"+{r.gain_vs_single_venue_bps} bps",
            f"{r.route_us_median:.0f} / {r.route_us_p99:.0f} us",
        )
    console.print(table)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(rows_as_dicts(rows), option=orjson.OPT_INDENT_2))


def _warn_if_rate_limited(error_samples: list[str]) -> None:
    if any(sample.startswith("429") for sample in error_samples):
        console.print("[yellow]The key's rate limit refused orders: to measure the service "
                      "rather than the limit, run it with RATE_LIMIT_ORDERS= (empty).[/]")


def _bench_output(title: str, figures: dict[str, Any], json_out: Path | None,
                  reference: dict[str, Any] | None = None,
                  pairs: Sequence[tuple[str, str]] = ()) -> None:
    """The bench's figures as a table (and JSON); with a same-run reference, that too, and
    our figures as ratios to it (JSON: "reference" and "vs_reference")."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, str(value))
    console.print(table)
    out = dict(figures)
    if reference is not None:
        from order_engine.bench.reference import ratios

        vs = ratios(figures, reference, pairs)
        table = Table(title="Reference: this box's ceilings, measured in this run")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for part, values in reference.items():
            if part == "passes":  # both passes as measured: in the JSON only
                continue
            if isinstance(values, dict):
                for name, value in values.items():
                    table.add_row(f"{part}.{name}", str(value))
            else:
                table.add_row(part, str(values))
        console.print(table)
        table = Table(title="Ours as a ratio to the reference (compare these across machines)")
        table.add_column("ours / reference")
        table.add_column("ratio", justify="right")
        for name, ratio in vs.items():
            table.add_row(name, "not measured" if ratio is None else f"{ratio:.3f}")
        console.print(table)
        out |= {"reference": reference, "vs_reference": vs}
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))


ReferenceOption = Annotated[bool, typer.Option(
    "--reference/--no-reference", help=(
        "First measure this box's own ceilings in the same run (a bare uvicorn app under "
        "the same load generator, PostgreSQL's commit rate, Redis round trips) and report "
        "our figures also as ratios to them, which compare across machines."))]
ReferenceSecondsOption = Annotated[float, typer.Option(
    "--reference-seconds", min=0.5, help=(
        "Seconds for each reference in each pass (HTTP, PostgreSQL; Redis half of it), "
        "plus a quarter for the lone-commit and lone-round-trip latencies."))]
RedisUrlOption = Annotated[str | None, typer.Option(
    "--redis-url", envvar="REDIS_URL", help="The service's Redis, for the reference.")]


ReferenceAfterOption = Annotated[bool, typer.Option(
    "--reference-after/--no-reference-after", help=(
        "Measure the reference again after the load and use the mean of both passes; "
        "their drift says whether the box stayed the same. Turn it off when the run leaves "
        "work behind it (ingest with workers executing the backlog)."))]


def _reference_pass(enabled: bool, when: str, *, connections: int, seconds: float,
                    database_url: str | None, redis_url: str | None,
                    processes: int = 1) -> dict[str, Any] | None:
    if not enabled:
        return None
    from order_engine.bench.reference import measure_reference

    settings = get_settings()
    err_console.print(f"reference {when} (~{seconds * 2.75 + 1:.0f} s): bare uvicorn, "
                      "PostgreSQL commits, Redis round trips")
    try:
        return asyncio.run(measure_reference(
            http_connections=connections, seconds=seconds, database_url=database_url,
            redis_url=redis_url, redis_prefix=settings.redis_prefix,
            pg_connections=settings.db_pool_size, http_processes=processes))
    except Exception as exc:  # a server refusing, a URL wrong: say so, not a traceback
        raise _fail(f"reference: {type(exc).__name__}: {exc} (--no-reference skips it)"
                    ) from exc


def _reference(before: dict[str, Any] | None, after: dict[str, Any] | None
               ) -> dict[str, Any] | None:
    if before is None:
        return None
    from order_engine.bench.reference import DRIFT_WARNING, bracket

    reference = bracket(before, after)
    moved = {path: d for path, d in reference.get("drift", {}).items() if d > DRIFT_WARNING}
    if moved:
        err_console.print(
            "[yellow]the box's ceilings moved between the reference before the load and the "
            f"one after ({', '.join(f'{p} {d:.0%}' for p, d in moved.items())}): something "
            "else was using it; take the ratios with care[/]")
    return reference


PlotOption = Annotated[Path | None, typer.Option(
    "--plot", metavar="PATH.png", dir_okay=False,
    help="Also write a PNG of the measured latency distributions here: histogram and "
         "CDF with p50/p90/p99.")]


def _check_plot_path(plot: Path | None) -> None:
    """Before the run, not after it: a bad --plot path must not waste a benchmark."""
    if plot is not None and not plot.resolve().parent.is_dir():
        raise _fail(f"--plot: directory {plot.parent} does not exist")


def _write_plot(plot: Path | None, series: dict[str, list[float]], title: str) -> None:
    if plot is None:
        return
    from order_engine.bench.plot import plot_latency_distributions

    try:
        plot_latency_distributions(series, title, plot)
    except ValueError as exc:  # nothing was measured: say so rather than draw nothing
        raise _fail(f"--plot: {exc}") from None
    err_console.print(f"plot written to {plot}")


def _progress(what: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


@bench_app.command("ingest")
def bench_ingest(
    connections: Annotated[int, typer.Option(min=1, help="Keep-alive connections.")] = 64,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load.")] = 20.0,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    plot: PlotOption = None,
    reference: ReferenceOption = True,
    reference_after: ReferenceAfterOption = True,
    reference_seconds: ReferenceSecondsOption = 3.0,
    reference_processes: Annotated[int, typer.Option(min=1, help=(
        "Bare uvicorn processes on the reference's port: as many as the API has "
        "(`up --api-processes N`)."))] = 1,
    database_url: Annotated[str | None, typer.Option(envvar="DATABASE_URL", help=(
        "The service's database, for the reference's commit rate."))] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Sustained POST /api/orders: orders/s and latency p50/p90/p99/max, errors.
    --plot draws the request latency distribution. First, unless --no-reference, this
    box's ceilings in the same run (see [cyan]--reference[/]); orders/s is then also
    reported as a ratio to a bare uvicorn app's requests/s under the same load.

    Example: [cyan]order-engine bench ingest --connections 64 --duration 20 --plot ingest.png[/]
    """
    from order_engine.bench.load import post_orders
    from order_engine.bench.reference import INGEST_RATIOS

    key = _require_key(api_key)
    _check_plot_path(plot)
    ref_args: dict[str, Any] = {
        "connections": connections, "seconds": reference_seconds,
        "database_url": database_url, "redis_url": redis_url,
        "processes": reference_processes}
    before = _reference_pass(reference, "before the load", **ref_args)
    with _progress(f"POST /api/orders x{connections}") as progress:
        task = progress.add_task("ingest", total=None)
        result = asyncio.run(post_orders(url, key, connections, duration_s=duration,
                                         on_progress=lambda n: progress.advance(task, n)))
    ref = _reference(before, _reference_pass(reference and reference_after, "after the load",
                                             **ref_args))
    figures: dict[str, Any] = {"connections": connections, **result.summary()}
    if result.error_samples:
        figures["error_samples"] = result.error_samples
    _warn_if_rate_limited(result.error_samples)
    _bench_output("Ingest: POST /api/orders", figures, json_out, ref, INGEST_RATIOS)
    _write_plot(
        plot, {"POST /api/orders, request latency": result.latencies_ms},
        f"bench ingest: POST /api/orders over {connections} keep-alive connections, "
        f"{result.seconds:.0f} s\n{result.rate:,.0f} orders/s, {result.requests:,} requests, "
        f"{result.errors:,} errors",
    )


@bench_app.command("e2e")
def bench_e2e(
    orders_count: Annotated[int, typer.Option("--orders", min=1)] = 2000,
    connections: Annotated[int, typer.Option(min=1)] = 64,
    in_flight: Annotated[int | None, typer.Option(min=1, help=(
        "Closed loop: keep at most this many orders open at once (a new one as soon as "
        "one is terminal). Without it, every order is submitted at once."))] = None,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
    database_url: Annotated[str | None, typer.Option(envvar="DATABASE_URL", help=(
        "The service's database, to read outcomes and the chain's ledger."))] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    plot: PlotOption = None,
    reference: ReferenceOption = True,
    reference_after: ReferenceAfterOption = True,
    reference_seconds: ReferenceSecondsOption = 3.0,
    redis_url: RedisUrlOption = None,
) -> None:
    """Submit N orders as fast as possible (or --in-flight at a time) and wait until all are
    terminal: orders/s confirmed, time per order from creation (overhead) and from a
    worker's pick-up (processing) p50/p99, and that each confirmed exactly once.
    Run the service with SIM_LATENCY_SCALE=0. --plot draws each confirmed order's time
    from creation to confirmation, and the submissions' request latency.

    Example: [cyan]order-engine bench e2e --orders 2000 --connections 64 --in-flight 100[/]
    """
    from order_engine.bench.load import run_e2e
    from order_engine.bench.reference import E2E_RATIOS

    key = _require_key(api_key)
    if not database_url:
        raise _fail("--database-url (or DATABASE_URL) is needed to verify the outcomes")
    _check_plot_path(plot)
    ref_args: dict[str, Any] = {
        "connections": min(connections, in_flight or connections),
        "seconds": reference_seconds, "database_url": database_url, "redis_url": redis_url}
    before = _reference_pass(reference, "before the load", **ref_args)
    with _progress("submitting") as progress:
        task = progress.add_task("e2e", total=orders_count)
        result = asyncio.run(run_e2e(url, key, database_url, orders_count, connections,
                                     in_flight=in_flight,
                                     on_progress=lambda n: progress.advance(task, n)))
    ref = _reference(before, _reference_pass(reference and reference_after, "after the load",
                                             **ref_args))
    figures = result.summary()
    _bench_output("End to end", figures, json_out, ref, E2E_RATIOS)
    _warn_if_rate_limited(result.submitted.error_samples)
    ingest = result.submitted
    _write_plot(
        plot,
        {"end to end per confirmed order, created → confirmed": result.overhead_ms,
         "processing per confirmed order, picked up → confirmed": result.processing_ms,
         "POST /api/orders, request latency": ingest.latencies_ms},
        f"bench e2e: {len(ingest.order_ids):,} orders over {connections} connections, "
        f"all terminal in {result.seconds_to_all_terminal:.1f} s\n"
        f"{result.confirmed:,} confirmed at {figures['confirmed_per_s']:,} orders/s, "
        f"{result.failed:,} failed, {result.stuck:,} stuck; ingest {ingest.rate:,.0f} orders/s",
    )
    if not figures["exactly_once"] or figures["stuck"]:
        raise typer.Exit(1)


@bench_app.command("ws")
def bench_ws(
    sockets: Annotated[int, typer.Option(min=1, help="Idle watchers to hold.")] = 1000,
    orders_count: Annotated[int, typer.Option("--orders", min=1)] = 200,
    rate: Annotated[float | None, typer.Option(min=0.1, help=(
        "Orders per second: a steady flow. Without it, every order at once (a flood: "
        "workers, API and this client then compete for the CPU)."))] = None,
    watchers_per_order: Annotated[int, typer.Option(
        min=1, help="Watchers opened on each order at its acknowledgement.")] = 1,
    idle_api_key: Annotated[str | None, typer.Option(
        envvar="ORDER_ENGINE_IDLE_API_KEY", help=(
            "A key with no orders of its own (order-engine keys create --name bench-idle): "
            "the idle watchers follow its firehose and are held while the orders flow. "
            "Without it they are closed before."))] = None,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    plot: PlotOption = None,
    reference: ReferenceOption = True,
    reference_after: ReferenceAfterOption = True,
    reference_seconds: ReferenceSecondsOption = 3.0,
    database_url: Annotated[str | None, typer.Option(envvar="DATABASE_URL", help=(
        "The service's database, for the reference's commit latency."))] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Hold N idle WebSocket watchers while orders flow, each order watched from its
    acknowledgement: delivery delay from commit to client p50/p99, the API's memory per
    idle socket (meaningful on a freshly started API only), and dropped, duplicated or
    stray events (0). --plot draws the delivery delays.

    Example: [cyan]order-engine bench ws --sockets 10000 --orders 1000 --rate 50 --idle-api-key K[/]
    """
    from order_engine.bench.reference import WS_RATIOS
    from order_engine.bench.ws import SUBMIT_CONNECTIONS, run_ws

    key = _require_key(api_key)
    _check_plot_path(plot)
    ref_args: dict[str, Any] = {
        "connections": min(SUBMIT_CONNECTIONS, orders_count), "seconds": reference_seconds,
        "database_url": database_url, "redis_url": redis_url}
    before = _reference_pass(reference, "before the load", **ref_args)
    result = asyncio.run(run_ws(url, key, sockets, orders_count, idle_key=idle_api_key,
                                watchers_per_order=watchers_per_order, rate=rate))
    ref = _reference(before, _reference_pass(reference and reference_after, "after the load",
                                             **ref_args))
    figures = result.summary()
    _bench_output("WebSocket fan-out", figures, json_out, ref, WS_RATIOS)
    held = "held" if idle_api_key else "closed before the orders"
    _write_plot(
        plot, {"delivery delay, event commit → client": result.delivery_ms},
        f"bench ws: {figures['watchers']:,} watchers on {figures['orders']:,} orders, "
        f"{sockets:,} idle sockets {held}\n{figures['deliveries']:,} live deliveries, "
        f"{figures['missing']:,} missing, {figures['duplicated']:,} duplicated",
    )
    if any(figures[name] for name in ("missing", "duplicated", "incomplete_watchers",
                                      "idle_dropped", "idle_stray_messages")):
        raise typer.Exit(1)



DatabaseUrlOption = Annotated[str | None, typer.Option(envvar="DATABASE_URL", help=(
    "The service's database."))]


@bench_app.command("seed-history")
def bench_seed_history(
    orders_count: Annotated[int, typer.Option("--orders", min=1)] = 1_000_000,
    api_key: KeyOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Give a key months of history: N finished orders (5 events each, one in 40 failed,
    one every 5 s back from its oldest), written straight into PostgreSQL. For `bench
    reads` and for running the other benches against a database that has a past.

    Example: [cyan]order-engine bench seed-history --orders 1000000[/]
    """
    from order_engine.bench.history import seed_history

    key = _require_key(api_key)
    if not database_url:
        raise _fail("--database-url (or DATABASE_URL) is needed to write the history")
    with _progress("seeding") as progress:
        task = progress.add_task("seed", total=orders_count)
        figures = asyncio.run(seed_history(database_url, key, orders_count,
                                           on_progress=lambda n: progress.advance(task, n)))
    _bench_output("Seeded history", dict(figures), None)


@bench_app.command("isolation")
def bench_isolation(
    attacker_key: Annotated[str, typer.Option(
        "--attacker-key", envvar="ORDER_ENGINE_ATTACKER_KEY", help=(
            "The flooding key: another key than --api-key "
            "(order-engine keys create --name attacker)."))],
    seconds: Annotated[float, typer.Option(min=2, help="Seconds per phase.")] = 15.0,
    victim_rate: Annotated[float, typer.Option(min=1, help=(
        "The victim's orders per second (each followed by a read of it), within its "
        "limits."))] = 10.0,
    connections: Annotated[int, typer.Option(min=1, help=(
        "Connections per flood (orders, quotes; half random keys, half oversize)."))] = 16,
    sockets: Annotated[int, typer.Option(min=1, help=(
        "Firehose WebSockets the attacker opens (more than MAX_WEBSOCKETS_PER_KEY)."))] = 150,
    attacker_order_rate: Annotated[float, typer.Option(min=1, help=(
        "Orders per second flowing to the attacker's sockets in their phase alone "
        "(its RATE_LIMIT_ORDERS)."))] = 20.0,
    idle_connections: Annotated[int, typer.Option(min=0, help=(
        "Connections that send nothing, held (and reopened) in the slow-clients flood."))
    ] = 1000,
    slowloris: Annotated[int, typer.Option(min=0, help=(
        "Connections sending their headers a byte a second, likewise."))] = 200,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
) -> None:
    """Another key's latency (p50/p99 of an order and a read, each phase against the
    quiet one) while one key floods orders, quotes and WebSockets past its limits, and
    clients without a key send random keys and oversize bodies or hold idle, slowloris
    and endless-header connections; each flood alone, then all at once. Also every
    answer's status (any 5xx fails the run) and the API's memory.
    Run the service with its default limits.

    Example: [cyan]order-engine bench isolation --attacker-key KEY[/] (another key than
    --api-key's: order-engine keys create --name attacker)
    """
    import orjson
    from rich.table import Table

    from order_engine.bench.isolation import run_isolation

    victim = _require_key(api_key)
    if attacker_key == victim:
        raise _fail("--attacker-key must be another key than --api-key")
    phases = asyncio.run(run_isolation(
        url, victim, attacker_key, seconds=seconds, victim_rate=victim_rate,
        connections=connections, sockets=sockets, attacker_order_rate=attacker_order_rate,
        idle_connections=idle_connections, slowloris=slowloris,
        on_phase=lambda name: console.print(f"[dim]{name}...[/]")))
    quiet = phases[0]
    rows = [phase.row(quiet) for phase in phases]
    table = Table(title="Isolation: the victim key's latency under floods")
    columns = ["phase", "victim POST p50 ms", "victim POST p99 ms", "victim GET p50 ms",
               "victim GET p99 ms", "victim POST p99 x quiet", "victim GET p99 x quiet",
               "5xx", "api rss MB"]
    for column in columns:
        table.add_column(column.replace("victim ", ""), justify="right")
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    console.print(table)
    for row in rows:
        console.print(f"[dim]{row['phase']}: {row['answers']}"
                      + (f", sockets {row['attacker sockets']}" if "attacker sockets" in row
                         else "") + "[/]")
    if json_out is not None:
        json_out.write_text(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    if any(row["5xx"] for row in rows):
        raise typer.Exit(1)


@bench_app.command("reads")
def bench_reads_command(
    depth: Annotated[list[int] | None, typer.Option(
        help="Rows deep to read a page at (repeatable).")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Requests per read.")] = 50,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
    database_url: DatabaseUrlOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
) -> None:
    """What a key's reads cost at its history's depth: `GET /api/orders?limit=100` at
    several depths (plain and `status=failed`) and `/api/stats`, p50/p99/max, one request
    at a time. Seed a history first (`bench seed-history`).

    Example: [cyan]order-engine bench reads --depth 0 --depth 500000 --depth 990000[/]
    """
    from rich.table import Table

    from order_engine.bench.history import bench_reads

    key = _require_key(api_key)
    if not database_url:
        raise _fail("--database-url (or DATABASE_URL) is needed to find the deep cursors")
    depths = tuple(depth or (0, 10_000, 100_000, 500_000, 990_000))
    rows = asyncio.run(bench_reads(url, database_url, key, depths=depths, repeats=repeats))
    table = Table(title=f"Reads, {repeats} requests each")
    for column in ("read", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["read"]), str(row["p50_ms"]), str(row["p99_ms"]),
                      str(row["max_ms"]))
    console.print(table)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


# --- talking to a running service ------------------------------------------------------


def _default_key() -> str | None:
    for var in ("ORDER_ENGINE_API_KEY", "BOOTSTRAP_API_KEY"):
        if os.environ.get(var):
            return os.environ[var]
    path = Path(get_settings().data_dir) / DEV_KEY_FILE
    return path.read_text().strip() if path.exists() else None


UrlOption = Annotated[str, typer.Option("--url", envvar="ORDER_ENGINE_URL",
                                        help="The API's base URL.")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="API key (default: "
                      "$ORDER_ENGINE_API_KEY, $BOOTSTRAP_API_KEY or the dev key of `up`).")]

STATUS_STYLE = {"confirmed": "bold green", "failed": "bold red", "retrying": "yellow"}


@app.command()
def submit(
    input_token: Annotated[str, typer.Argument(help="Token to sell, e.g. SOL.")],
    output_token: Annotated[str, typer.Argument(help="Token to buy, e.g. USDC.")],
    amount: Annotated[str, typer.Argument(help="Amount of the input token, e.g. 1.5.")],
    slippage_bps: Annotated[int, typer.Option("--slippage-bps")] = 50,
    watch_: Annotated[bool, typer.Option("--watch", help="Follow the order live.")] = False,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
) -> None:
    """Submit a market order and print its id.

    Example: [cyan]order-engine submit SOL USDC 1.5 --watch[/]
    """
    key = _require_key(api_key)
    body = {"type": "market", "inputToken": input_token, "outputToken": output_token,
            "amount": amount, "slippageBps": slippage_bps}
    response = _call("POST", url, "/api/orders", key, 201, json=body)
    order_id = response.json()["orderId"]
    console.print(order_id)
    if watch_:
        raise typer.Exit(_watch(url, key, order_id))


@app.command()
def watch(
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
) -> None:
    """Follow an order's status live until it is confirmed or failed.

    Example: [cyan]order-engine watch 2b1c...[/]
    """
    raise typer.Exit(_watch(url, _require_key(api_key), order_id))


@app.command()
def orders(
    status: Annotated[str | None, typer.Option(help="Only orders in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many (newest first).")] = 20,
    url: UrlOption = "http://127.0.0.1:3000",
    api_key: KeyOption = None,
) -> None:
    """List your recent orders as a table.

    Example: [cyan]order-engine orders --status failed --limit 50[/]
    """
    from rich.table import Table

    key = _require_key(api_key)
    params: dict[str, str | int] = {"limit": limit, **({"status": status} if status else {})}
    response = _call("GET", url, "/api/orders", key, 200, params=params)
    table = Table(title=f"Recent orders ({len(response.json()['orders'])})")
    for column in ("created", "order", "pair", "amount", "status", "route", "amount out",
                   "attempts", "reason"):
        table.add_column(column)
    for o in response.json()["orders"]:
        venues = sorted({leg["venue"] for leg in o["route"] or []})
        table.add_row(
            o["createdAt"][11:19], o["orderId"][:8], f"{o['inputToken']}->{o['outputToken']}",
            o["amount"], f"[{STATUS_STYLE.get(o['status'], 'cyan')}]{o['status']}[/]",
            "+".join(venues) or "-", o["amountOut"] or "-", str(o["attempts"]),
            (o["failureReason"] or "")[:40],
        )
    console.print(table)


def _require_key(api_key: str | None) -> str:
    key = api_key or _default_key()
    if not key:
        raise _fail("no API key: pass --api-key or set ORDER_ENGINE_API_KEY")
    return key


def _call(method: str, url: str, path: str, key: str, expected: int,
          **kwargs: Any) -> httpx.Response:
    """One API request; a clear message and exit 1 on anything but `expected`."""
    try:
        response = httpx.request(method, f"{url.rstrip('/')}{path}",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=10,
                                 **kwargs)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {url}: {exc}") from None
    if response.status_code != expected:
        raise _fail(_problem_text(response))
    return response


def _problem_text(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    lines = [f"{problem.get('title', 'error')}: {problem.get('detail', '')}"]
    lines += [f"  {e['field']}: {e['message']}" for e in problem.get("errors", [])]
    return "\n".join(lines)


def _watch(url: str, key: str, order_id: str) -> int:
    """Print each status as it arrives; 0 when confirmed, 1 otherwise."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ws_url = url.replace("http", "ws", 1).rstrip("/") + f"/ws/orders/{order_id}"
    final: str | None = None
    try:
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            try:
                for raw in ws:
                    event = orjson.loads(raw)
                    if event.get("type") == "error":
                        err_console.print(f"[red]{event.get('message')}[/]")
                        return 1
                    final = event["status"]
                    console.print(_event_line(event), soft_wrap=True)
            except ConnectionClosed:
                pass
            if ws.close_code == 4401:
                err_console.print("[red]the API key was refused[/]")
                return 1
    except OSError as exc:
        err_console.print(f"[red]cannot reach {ws_url}: {exc}[/]")
        return 1
    return 0 if final == "confirmed" else 1


def _event_line(event: dict[str, Any]) -> str:
    status = event["status"]
    style = STATUS_STYLE.get(status, "cyan")
    detail = ""
    if status == "building":
        leg = event["route"][0]
        detail = f"via {leg['venue']} expecting {event['expectedAmountOut']}" \
                 f" (min {event['minAmountOut']})"
    elif status == "submitted":
        detail = f"tx {event['txHash']}"
    elif status == "confirmed":
        detail = f"received {event['amountOut']} at {event['executionPrice']}"
    elif status == "retrying":
        detail = f"{event['error']}; retry in {event['retryInMs']} ms"
    elif status == "failed":
        detail = event["reason"]
    stamp = event["timestamp"][11:23]
    return f"{stamp}  #{event['seq']:<2} [{style}]{status:<10}[/] {detail}"


def _settings_errors(exc: ValidationError) -> list[str]:
    """Each invalid setting as `NAME: why`, without its value (it may be a secret)."""
    lines = []
    for error in exc.errors(include_input=False):
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(message if message.startswith(name) else f"{name}: {message}")
    return lines


def main() -> None:
    try:
        app()
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        for line in _settings_errors(exc):
            err_console.print("[bold red]invalid setting:[/] " + escape(line),
                              soft_wrap=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
