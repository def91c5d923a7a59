"""`order-engine bench ws`: WebSocket fan-out under load.

Opens N idle watchers (firehose, `/ws/orders`) and reads the API's resident memory before
and after (from its own /metrics). With a quiet key for them (`idle_key`: one with no
orders flowing), they stay open while orders flow, and must receive nothing. Then it
submits orders, each watched on `/ws/orders/{id}` from its acknowledgement, as clients
do, and measures the delay from each live event's commit timestamp to its arrival, and
that every watcher got seq 1..n exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from order_engine.api.server import allow_many_sockets
from order_engine.bench.load import post_orders
from order_engine.bench.stats import percentile
from order_engine.domain.orders import OrderStatus

OPEN_WAVE = 200  # connections opened at once: the server's accept queue is finite
SUBMIT_CONNECTIONS = 16  # keep-alive connections submitting the orders (at most)


@dataclass
class WsResult:
    """What `run_ws` measured: the figures it reports (`summary()`, the JSON of
    `bench ws`) and the raw delivery delays behind them (ms, commit to client, live
    deliveries only, sorted), for `--plot`."""

    figures: dict[str, Any]
    delivery_ms: list[float]

    def summary(self) -> dict[str, Any]:
        return self.figures


@dataclass
class _Watcher:
    seen: dict[int, int] = field(default_factory=dict)  # seq -> times received
    delays_ms: list[float] = field(default_factory=list)  # live events only
    replayed: int = 0  # committed before the watcher connected: history, not delivery
    terminal: bool = False  # saw the order confirmed or failed


async def resident_bytes(base_url: str) -> float | None:
    """The API process's RSS, from prometheus_client's process collector."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base_url}/metrics", timeout=10)).text
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    return None


async def _open_idle(ws_base: str, key: str, count: int) -> list[ClientConnection]:
    idle: list[ClientConnection] = []
    for start in range(0, count, OPEN_WAVE):
        idle += await asyncio.gather(*(_open_firehose(ws_base, key)
                                       for _ in range(min(OPEN_WAVE, count - start))))
    return idle


async def _open_firehose(ws_base: str, key: str) -> ClientConnection:
    ws = await websockets.connect(f"{ws_base}/ws/orders?apiKey={key}", open_timeout=60)
    try:
        await ws.recv()  # the snapshot
    except websockets.ConnectionClosed as closed:
        if closed.rcvd is not None and closed.rcvd.code == 4429:
            raise RuntimeError("the service refused a firehose over the key's limit: run it "
                               "with MAX_FIREHOSES_PER_KEY at least --sockets") from closed
        raise
    return ws


async def _idle_outcome(idle: list[ClientConnection]) -> tuple[int, int]:
    """How many idle watchers the server dropped, and how many messages they received
    after their snapshot (their key had no orders: both must be 0)."""
    dropped = sum(1 for ws in idle if ws.state is not State.OPEN)
    stray = 0
    for ws in idle:
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 0)
                stray += 1
    return dropped, stray


async def _close_all(sockets: list[ClientConnection]) -> None:
    for start in range(0, len(sockets), OPEN_WAVE):
        await asyncio.gather(*(ws.close() for ws in sockets[start:start + OPEN_WAVE]))


async def run_ws(base_url: str, key: str, sockets: int, orders: int, *,
                 idle_key: str | None = None, watchers_per_order: int = 1,
                 rate: float | None = None, settle_s: float = 60.0) -> WsResult:
    """`sockets` idle watchers: opened before any order, the API's RSS read before and
    after. On `idle_key`'s firehose they are held while the orders flow; without one they
    would receive every event, so they are closed first. Delivery: each of `orders`
    orders gets `watchers_per_order` watchers, opened at its acknowledgement; the orders
    are sent at `rate` per second, or as fast as the API takes them."""
    allow_many_sockets()
    ws_base = base_url.replace("http", "ws", 1).rstrip("/")
    rss_before = await resident_bytes(base_url)
    idle = await _open_idle(ws_base, idle_key or key, sockets)
    await asyncio.sleep(1.0)  # let the server settle what the handshakes allocated
    rss_after = await resident_bytes(base_url)
    if idle_key is None:
        await _close_all(idle)

    watchers: list[_Watcher] = []
    open_now = peak_open = 0

    async def watch(order_id: str) -> None:
        nonlocal open_now, peak_open
        watcher = _Watcher()
        watchers.append(watcher)
        url = f"{ws_base}/ws/orders/{order_id}?apiKey={key}"
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            async with websockets.connect(url, open_timeout=60) as ws:
                connected = time.time()
                open_now += 1
                peak_open = max(peak_open, open_now)
                try:
                    async for raw in ws:
                        arrived = time.time()
                        message = orjson.loads(raw)
                        committed = datetime.fromisoformat(message["timestamp"]).timestamp()
                        if committed >= connected:
                            watcher.delays_ms.append((arrived - committed) * 1000)
                        else:
                            watcher.replayed += 1
                        seq = int(message["seq"])
                        watcher.seen[seq] = watcher.seen.get(seq, 0) + 1
                        watcher.terminal = OrderStatus(message["status"]).is_terminal
                finally:
                    open_now -= 1

    tasks: list[asyncio.Task[None]] = []
    submitted = await post_orders(
        base_url, key, min(SUBMIT_CONNECTIONS, orders), total=orders, rate=rate,
        on_accepted=lambda order_id: tasks.extend(
            asyncio.create_task(watch(order_id)) for _ in range(watchers_per_order)),
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), settle_s)
    idle_dropped, idle_stray = await _idle_outcome(idle) if idle_key else (0, 0)
    if idle_key is not None:
        await _close_all(idle)

    # Each order's watcher must see seq 1..n, each once, ending with a terminal status.
    missing = sum(1 for w in watchers for seq in range(1, 1 + max(w.seen, default=0))
                  if seq not in w.seen)
    duplicated = sum(n - 1 for w in watchers for n in w.seen.values() if n > 1)
    delays = sorted(d for w in watchers for d in w.delays_ms)

    per_socket = None
    if rss_before is not None and rss_after is not None and sockets:
        per_socket = round((rss_after - rss_before) / sockets / 1024, 1)
    return WsResult(figures={
        "idle_sockets": sockets,
        "idle_held_during_flow": idle_key is not None,
        "idle_dropped": idle_dropped,
        "idle_stray_messages": idle_stray,
        "api_rss_kib_per_idle_socket": per_socket,
        "orders": len(submitted.order_ids),
        "orders_per_s_sent": round(submitted.rate, 1),
        "watchers": len(watchers),
        "peak_open_sockets": peak_open + (sockets if idle_key else 0),
        "incomplete_watchers": sum(1 for w in watchers if not w.terminal),
        "deliveries": len(delays),
        "replayed": sum(w.replayed for w in watchers),
        "delivery_ms_p50": round(percentile(delays, 50), 2),
        "delivery_ms_p90": round(percentile(delays, 90), 2),
        "delivery_ms_p99": round(percentile(delays, 99), 2),
        "delivery_ms_max": round(delays[-1], 2) if delays else 0.0,
        "missing": missing,
        "duplicated": duplicated,
    }, delivery_ms=delays)
