"""`order-engine bench ws`: WebSocket fan-out under load.

Holds N idle firehose watchers (`/ws/orders`) and reads the API's resident memory before
and after opening them (from its own /metrics); then submits orders, each watched on
`/ws/orders/{id}` from its acknowledgement, as clients do, and measures the delay from each
event's commit timestamp to its arrival, and that every watcher got seq 1..n exactly once.
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

from order_engine.bench.load import post_orders


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
    seen: dict[tuple[str, int], int] = field(default_factory=dict)  # (order, seq) -> times
    delays_ms: list[float] = field(default_factory=list)


async def _resident_bytes(base_url: str) -> float | None:
    """The API process's RSS, from prometheus_client's process collector."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base_url}/metrics", timeout=10)).text
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    return None


async def run_ws(base_url: str, key: str, sockets: int, orders: int,
                 settle_s: float = 10.0) -> WsResult:
    """Memory: `sockets` idle firehose watchers are opened (before any order, so they stay
    quiet) and the API's RSS is read before and after; they are then closed. Delivery:
    each of `orders` orders gets sockets // orders watchers (at least one), opened right
    after the order is acknowledged, as clients do."""
    ws_base = base_url.replace("http", "ws", 1).rstrip("/")
    rss_before = await _resident_bytes(base_url)
    idle: list[Any] = []
    for start in range(0, sockets, 200):  # in waves: the accept queue is finite
        idle += await asyncio.gather(*(_open_firehose(ws_base, key)
                                       for _ in range(min(200, sockets - start))))
    await asyncio.sleep(1.0)
    rss_after = await _resident_bytes(base_url)
    for ws in idle:
        await ws.close()
    per_order = max(1, sockets // orders)

    watchers: list[tuple[str, _Watcher]] = []

    async def watch(order_id: str) -> None:
        watcher = _Watcher()
        watchers.append((order_id, watcher))
        url = f"{ws_base}/ws/orders/{order_id}?apiKey={key}"
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            async with websockets.connect(url, open_timeout=30) as ws:
                async for raw in ws:
                    arrived = time.time()
                    message = orjson.loads(raw)
                    sent = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
                    watcher.delays_ms.append((arrived - sent.timestamp()) * 1000)
                    key_ = (order_id, int(message["seq"]))
                    watcher.seen[key_] = watcher.seen.get(key_, 0) + 1

    tasks: list[asyncio.Task[None]] = []
    submitted = await post_orders(
        base_url, key, min(16, orders), total=orders,
        on_accepted=lambda order_id: tasks.extend(
            asyncio.create_task(watch(order_id)) for _ in range(per_order)),
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), settle_s + 60)

    # Each order's watcher must end with seq 1..n, each once (it closes at the terminal).
    missing = sum(
        1 for _, w in watchers
        for seq in range(1, 1 + max((s for _, s in w.seen), default=0))
        if not any(s == seq for _, s in w.seen)
    )
    duplicated = sum(n - 1 for _, w in watchers for n in w.seen.values() if n > 1)
    # Live deliveries only: history replayed at connect is not a delivery delay.
    delays = sorted(d for _, w in watchers for d in w.delays_ms if d < 60_000)

    def pct(q: float) -> float:
        return round(delays[min(len(delays) - 1, int(q / 100 * len(delays)))], 2) \
            if delays else 0.0

    per_socket = None
    if rss_before is not None and rss_after is not None and sockets:
        per_socket = round((rss_after - rss_before) / sockets / 1024, 1)
    return WsResult(figures={
        "idle_sockets_for_memory": sockets,
        "orders": len(submitted.order_ids),
        "watchers": len(watchers),
        "incomplete_watchers": sum(1 for _, w in watchers if not w.seen),
        "deliveries": len(delays),
        "delivery_ms_p50": pct(50),
        "delivery_ms_p99": pct(99),
        "delivery_ms_max": round(delays[-1], 2) if delays else 0.0,
        "missing": missing,
        "duplicated": duplicated,
        "api_rss_kib_per_idle_socket": per_socket,
    }, delivery_ms=delays)


async def _open_firehose(ws_base: str, key: str) -> Any:
    ws = await websockets.connect(f"{ws_base}/ws/orders?apiKey={key}", open_timeout=30)
    await ws.recv()  # the snapshot
    return ws
