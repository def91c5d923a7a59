"""What the dashboard reads: the firehose WebSocket, market prices, recent stats."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import orjson
import websockets

from tests.stack import API_KEY, Stack


async def test_firehose_sends_a_snapshot_then_every_event_of_the_keys_orders(
    stack: Stack, other_key: str
) -> None:
    earlier = await stack.submit()
    await stack.wait_terminal(earlier)
    url = f"{stack.ws_url}/ws/orders?apiKey={API_KEY}"
    async with websockets.connect(url) as ws:
        snapshot = orjson.loads(await ws.recv())
        mine = await stack.submit(amount="0.3")
        await stack.submit(key=other_key)  # someone else's: never shown
        seen: list[dict[str, object]] = []
        async with asyncio.timeout(20):
            while not any(m.get("status") == "confirmed" and m.get("orderId") == mine
                          for m in seen):
                seen.append(orjson.loads(await ws.recv()))

    assert snapshot["type"] == "snapshot"
    assert earlier in [o["orderId"] for o in snapshot["orders"]]
    assert {m["orderId"] for m in seen} == {mine}
    assert [m["status"] for m in seen] == [
        "pending", "routing", "building", "submitted", "confirmed"]


async def test_firehose_refuses_a_bad_key(stack: Stack) -> None:
    async with websockets.connect(f"{stack.ws_url}/ws/orders?apiKey=nope") as ws:
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4401


async def test_market_lists_every_pair_with_each_venues_price(client: httpx.AsyncClient) -> None:
    market = (await client.get("/api/market")).json()
    pairs = {p["pair"]: p for p in market["pairs"]}
    assert set(pairs) >= {"SOL/USDC", "SOL/USDT", "USDC/USDT", "BONK/SOL", "JUP/USDC"}
    sol = pairs["SOL/USDC"]
    assert {v["venue"] for v in sol["venues"]} == {"raydium", "meteora"}
    assert all(Decimal("100") < Decimal(v["price"]) < Decimal("200") for v in sol["venues"])
    assert Decimal(sol["spreadBps"]) >= 0


async def test_stats_count_recent_orders(stack: Stack, client: httpx.AsyncClient) -> None:
    order_id = await stack.submit()
    await stack.wait_terminal(order_id)
    stats = (await client.get("/api/stats", params={"minutes": 5})).json()
    assert stats["windowMinutes"] == 5
    assert sum(b["confirmed"] for b in stats["buckets"]) >= 1
    assert stats["byStatus"]["confirmed"] >= 1
    assert any(b["latencyP50Ms"] is not None for b in stats["buckets"])


async def test_metrics_are_prometheus_text_with_orders_stages_and_queue(stack: Stack) -> None:
    order_id = await stack.submit()
    await stack.wait_terminal(order_id)
    async with httpx.AsyncClient(base_url=stack.base_url) as http:  # no key needed
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("oe_orders_submitted_total", 'oe_order_transitions_total{status="confirmed"}',
                 'oe_order_stage_seconds_bucket{le="0.005",stage="routing"}',
                 'oe_order_end_to_end_seconds_count{outcome="confirmed"}',
                 'oe_venue_quote_seconds_count{venue="raydium"}', "oe_queue_depth",
                 'oe_open_orders{status="pending"}', "oe_websocket_subscriptions",
                 "oe_worker_jobs_in_flight"):
        assert name in text, name
