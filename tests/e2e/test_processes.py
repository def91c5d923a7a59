"""The real processes: `order-engine api` and `order-engine worker`, over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import httpx
import orjson
import pytest
import websockets

from order_engine.config import Settings
from order_engine.embedded import free_port
from tests.processes import processes, wait_until_ready
from tests.stack import API_KEY

pytestmark = pytest.mark.e2e


async def test_real_api_and_worker_processes_confirm_an_order_live(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(port=port, sim_latency_scale=0.05)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with processes(settings, "api", "worker") as procs:
        await asyncio.to_thread(wait_until_ready, base, procs)
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            created = await http.post(
                "/api/orders", json={"inputToken": "SOL", "outputToken": "USDC", "amount": "3"}
            )
            assert created.status_code == 201
            order_id = created.json()["orderId"]
            statuses = []
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws/orders/{order_id}", additional_headers=headers
            ) as ws:
                async with asyncio.timeout(30):
                    async for raw in ws:
                        statuses.append(orjson.loads(raw)["status"])
                close_code = ws.close_code
            order = (await http.get(f"/api/orders/{order_id}")).json()

    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    assert close_code == 1000
    assert order["status"] == "confirmed"
    # SIGTERM stops both cleanly (uvicorn re-raises the signal once it has shut down).
    assert [p.returncode for p in procs] in ([0, 0], [-signal.SIGTERM, 0])
