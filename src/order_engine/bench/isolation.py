"""`order-engine bench isolation`: one key's latency while another key, and clients with no
key at all, do their worst.

A victim key sends a steady flow (an order, then a read of it) and its latencies are kept
per phase: quiet, then each flood alone, then all of them together, then slow clients,
then quiet again.
The floods: the attacker key's orders and quotes as fast as its connections go (the
service admits them at the rate its limits allow and refuses the rest), as many firehose
WebSockets as it may hold and more, with orders flowing to them at its order limit; and
clients without a valid key sending random keys, oversize bodies and scrapes of /metrics,
or holding idle,
slowloris and endless-header connections. Also counted: every
answer's status (a 5xx anywhere is a failure) and the API's resident memory (its
/metrics) after each phase.

Raw asyncio streams, as in load.py: the load generator shares the box with the service.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import websockets

from order_engine.api.server import allow_many_sockets
from order_engine.bench.load import order_request, read_response
from order_engine.bench.stats import percentile
from order_engine.bench.ws import resident_bytes

QUOTE_PATH = "/api/quote?inputToken=SOL&outputToken=USDC&amount=1"
# The floods issue 12 bounds (another key within 2x of quiet, alone and all at once), and
# slow clients, measured after them on their own.
FLOODS = ("orders", "quotes", "websockets", "no key")
SLOW_CLIENTS = "slow clients"


@dataclass
class Phase:
    name: str
    victim_ms: dict[str, list[float]] = field(default_factory=lambda: {"POST": [], "GET": []})
    statuses: Counter[str] = field(default_factory=Counter)  # "who status": count
    sockets: Counter[str] = field(default_factory=Counter)  # "open" / close codes
    rss_mb: float | None = None

    def row(self, quiet: Phase | None) -> dict[str, Any]:
        row: dict[str, Any] = {"phase": self.name}
        for kind, samples in self.victim_ms.items():
            ordered = sorted(samples)
            for q in (50, 99):
                value = percentile(ordered, q) if ordered else 0.0
                row[f"victim {kind} p{q} ms"] = round(value, 2)
                if quiet is not None and quiet.victim_ms[kind]:
                    base = percentile(sorted(quiet.victim_ms[kind]), q)
                    row[f"victim {kind} p{q} x quiet"] = round(value / base, 2) if base else None
        row["answers"] = dict(sorted(self.statuses.items()))
        if self.sockets:
            row["attacker sockets"] = dict(sorted(self.sockets.items()))
        row["5xx"] = sum(n for k, n in self.statuses.items() if k.split()[-1].startswith("5"))
        row["api rss MB"] = self.rss_mb
        return row


class _Http:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(request)
            status, body, close = await read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _get(host: str, path: str, key: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n"
            ).encode()


async def _until(stop: asyncio.Event, step: Callable[[], Awaitable[None]]) -> None:
    while not stop.is_set():
        try:
            await step()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            await asyncio.sleep(0.01)  # the server closed it: a new connection next time


async def _victim(host: str, port: int, key: str, rate: float, phase: Phase,
                  stop: asyncio.Event) -> None:
    """An order then a read of it, `rate` pairs a second, on one connection each."""
    posts, gets = _Http(host, port), _Http(host, port)
    started, n = time.perf_counter(), 0

    async def step() -> None:
        nonlocal n
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        sent = time.perf_counter()
        status, body = await posts.exchange(order_request(host, key, n))
        phase.victim_ms["POST"].append((time.perf_counter() - sent) * 1000)
        phase.statuses[f"victim {status}"] += 1
        if status != 201:
            return
        order_id = orjson.loads(body)["orderId"]
        sent = time.perf_counter()
        status, _ = await gets.exchange(_get(host, f"/api/orders/{order_id}", key))
        phase.victim_ms["GET"].append((time.perf_counter() - sent) * 1000)
        phase.statuses[f"victim {status}"] += 1

    try:
        await _until(stop, step)
    finally:
        posts.close()
        gets.close()


async def _flood(host: str, port: int, who: str, request: Callable[[int], bytes],
                 phase: Phase, stop: asyncio.Event) -> None:
    http, n = _Http(host, port), 0

    async def step() -> None:
        nonlocal n
        n += 1
        status, _ = await http.exchange(request(n))
        phase.statuses[f"{who} {status}"] += 1

    try:
        await _until(stop, step)
    finally:
        http.close()


def _oversize(host: str) -> bytes:
    """A POST announcing 100 MiB that never sends it, with a random key."""
    return (f"POST /api/orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
            f"oe_{secrets.token_urlsafe(32)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 2**20}\r\n\r\n").encode()


async def _sockets(ws_url: str, key: str, count: int, phase: Phase,
                   stop: asyncio.Event) -> None:
    """Open `count` firehose WebSockets at once and read them until the phase ends."""
    async def one() -> None:
        try:
            async with websockets.connect(f"{ws_url}/ws/orders",
                                          additional_headers={"X-API-Key": key},
                                          max_size=None) as ws:
                first = True
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    if first:
                        phase.sockets["open"] += 1
                        first = False
        except websockets.ConnectionClosed as closed:
            phase.sockets[f"closed {closed.rcvd.code if closed.rcvd else 'no frame'}"] += 1
        except (OSError, websockets.InvalidHandshake) as exc:
            phase.sockets[type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(count)))


async def _answer_or_close(reader: asyncio.StreamReader, stop: asyncio.Event,
                           tick: Callable[[], None] | None = None) -> str | None:
    """Wait until the server answers or closes ("408", "closed"...); None if the phase
    ended first. `tick` is called every second meanwhile (a slowloris's next byte)."""
    while not stop.is_set():
        try:
            data = await asyncio.wait_for(reader.read(65_536), 1.0)
        except TimeoutError:
            if tick is not None:
                tick()
            continue
        except (ConnectionError, OSError):
            return "reset"
        return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
    return None


async def _slow_client(host: str, port: int, kind: str, phase: Phase,
                       stop: asyncio.Event) -> None:
    """One connection after another that is idle, sends its head a byte a second
    (slowloris), or sends a head that never ends; each counted by how it ended."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        tick: Callable[[], None] | None = None
        try:
            if kind == "slowloris":
                writer.write(b"GET /api/orders HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                tick = functools.partial(writer.write, b"a")
            elif kind == "endless head":
                writer.write(b"GET /api/orders HTTP/1.1\r\nHost: x\r\nX-Big: ")
                tick = functools.partial(writer.write, b"a" * 2**20)  # a MiB a second
                tick()
            ended = await _answer_or_close(reader, stop, tick)
            if ended is not None:
                phase.statuses[f"{kind} {ended}"] += 1
        except (ConnectionError, OSError):
            phase.statuses[f"{kind} reset"] += 1
        finally:
            writer.close()


async def run_isolation(base_url: str, victim_key: str, attacker_key: str, *,
                        seconds: float, victim_rate: float, connections: int,
                        sockets: int, attacker_order_rate: float,
                        idle_connections: int = 1000, slowloris: int = 200,
                        on_phase: Callable[[str], None] | None = None) -> list[Phase]:
    allow_many_sockets()
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    ws_url = base_url.replace("http://", "ws://", 1)
    head_host = f"{host}:{port}"

    def floods(names: tuple[str, ...], phase: Phase, stop: asyncio.Event) -> list[Any]:
        jobs: list[Any] = []
        if "orders" in names:
            jobs += [_flood(host, port, "attacker", lambda n: order_request(
                head_host, attacker_key, n), phase, stop) for _ in range(connections)]
        if "quotes" in names:
            jobs += [_flood(host, port, "attacker", lambda n: _get(
                head_host, QUOTE_PATH, attacker_key), phase, stop) for _ in range(connections)]
        if "websockets" in names:
            jobs.append(_sockets(ws_url, attacker_key, sockets, phase, stop))
            if "orders" not in names:  # orders to fan out, at the attacker's order limit
                jobs.append(_victim(host, port, attacker_key, attacker_order_rate / 2,
                                    Phase("fan-out"), stop))
        if "no key" in names:
            half = max(1, connections // 2)
            jobs += [_flood(host, port, "no key", lambda n: _get(
                head_host, "/api/orders", f"oe_{secrets.token_urlsafe(32)}"), phase, stop)
                for _ in range(half)]
            jobs += [_flood(host, port, "oversize", lambda n: _oversize(head_host), phase, stop)
                     for _ in range(half)]
            jobs += [_flood(host, port, "metrics", lambda n: (
                f"GET /metrics HTTP/1.1\r\nHost: {head_host}\r\n\r\n").encode(), phase, stop)
                for _ in range(half)]
        if SLOW_CLIENTS in names:
            jobs += [_slow_client(host, port, kind, phase, stop)
                     for kind, count in (("idle", idle_connections), ("slowloris", slowloris),
                                         ("endless head", 4))
                     for _ in range(count)]
        return jobs

    plan: list[tuple[str, tuple[str, ...]]] = [
        ("warm-up", ()), ("quiet", ()), *((f"flood: {name}", (name,)) for name in FLOODS),
        ("all floods at once", FLOODS), (f"flood: {SLOW_CLIENTS}", (SLOW_CLIENTS,)),
        ("quiet again", ())]
    phases: list[Phase] = []
    for name, names in plan:
        if on_phase is not None:
            on_phase(name)
        phase, stop = Phase(name), asyncio.Event()
        jobs = [_victim(host, port, victim_key, victim_rate, phase, stop),
                *floods(names, phase, stop)]
        running = asyncio.gather(*jobs)
        await asyncio.sleep(seconds)
        stop.set()
        await running
        rss = await resident_bytes(base_url)
        phase.rss_mb = round(rss / 2**20, 1) if rss is not None else None
        if name != "warm-up":  # connections, caches and the JIT-less paths warmed
            phases.append(phase)
        await asyncio.sleep(1.0)  # let the limits' windows and the queues drain
    return phases
