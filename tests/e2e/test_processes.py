"""The real processes: `order-engine api` and `order-engine worker`, over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

import httpx
import orjson
import pytest
import websockets

from order_engine.config import Settings
from order_engine.embedded import free_port
from tests.processes import processes, wait_for_status, wait_until_ready
from tests.stack import API_KEY

pytestmark = pytest.mark.e2e


async def test_real_api_and_worker_processes_confirm_an_order_live(
    make_settings: Callable[..., Settings],
) -> None:
    port, metrics_port = free_port(), free_port()
    settings = make_settings(port=port, sim_latency_scale=0.05, worker_metrics_port=metrics_port)
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
            worker_metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

    assert 'oe_order_transitions_total{status="confirmed"} 1.0' in worker_metrics
    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    assert close_code == 1000
    assert order["status"] == "confirmed"
    # SIGTERM stops both cleanly (uvicorn re-raises the signal once it has shut down).
    assert [p.returncode for p in procs] in ([0, 0], [-signal.SIGTERM, 0])


async def test_api_restart_closes_watchers_with_1001_and_they_resume_without_gaps(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(port=port, sim_latency_scale=1.0)  # confirmation takes 2-3 s
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with processes(settings, "worker") as workers:
        with processes(settings, "api") as api:
            await asyncio.to_thread(wait_until_ready, base, [*workers, *api])
            async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                created = await http.post(
                    "/api/orders",
                    json={"inputToken": "SOL", "outputToken": "USDT", "amount": "1"},
                )
            order_id = created.json()["orderId"]
            ws_url = f"ws://127.0.0.1:{port}/ws/orders/{order_id}"
            before: list[dict[str, object]] = []
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                before.append(orjson.loads(await ws.recv()))
                api[0].send_signal(signal.SIGTERM)  # mid-order: routing takes ~200 ms
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for raw in ws:
                        before.append(orjson.loads(raw))
                first_close = ws.close_code
        # The order went on without the API; the restarted API replays all of it.
        with processes(settings, "api") as api_again:
            await asyncio.to_thread(wait_until_ready, base, api_again)
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                async with asyncio.timeout(30):
                    after = [orjson.loads(raw) async for raw in ws]
                second_close = ws.close_code

    assert first_close == 1001
    assert before[-1]["status"] != "confirmed"  # the restart really was mid-order
    assert after[: len(before)] == before
    assert [m["seq"] for m in after] == list(range(1, len(after) + 1))
    assert [m["status"] for m in after] == [
        "pending", "routing", "building", "submitted", "confirmed"
    ]
    assert second_close == 1000


async def test_sigterm_lets_the_worker_finish_the_order_in_hand(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(port=port, sim_latency_scale=1.0)  # confirmation takes 2-3 s
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with processes(settings, "api") as api, processes(settings, "worker") as workers:
        await asyncio.to_thread(wait_until_ready, base, [*api, *workers])
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            created = await http.post(
                "/api/orders", json={"inputToken": "JUP", "outputToken": "USDC", "amount": "7"}
            )
            order_id = created.json()["orderId"]
            await wait_for_status(http, order_id, {"submitted"}, timeout=10)
            workers[0].send_signal(signal.SIGTERM)  # between submit and confirm
            exit_code = await asyncio.to_thread(workers[0].wait, 30)
            order = (await http.get(f"/api/orders/{order_id}")).json()

    assert exit_code == 0
    assert order["status"] == "confirmed"  # finished before the worker left


async def test_an_order_whose_worker_was_killed_is_finished_by_another(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(port=port, sim_latency_scale=1.0, worker_lease_s=3)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with processes(settings, "api") as api:
        with processes(settings, "worker") as first:
            await asyncio.to_thread(wait_until_ready, base, [*api, *first])
            async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                created = await http.post(
                    "/api/orders", json={"inputToken": "SOL", "outputToken": "USDC",
                                         "amount": "2"},
                )
                order_id = created.json()["orderId"]
                await wait_for_status(http, order_id, {"submitted"}, timeout=10)
            first[0].send_signal(signal.SIGKILL)  # dies between submit and confirm
            first[0].wait()
        # Without the lease, arq would keep the job from others for its timeout + 10 s
        # (130 s); with it, a new worker takes over within a few seconds.
        with processes(settings, "worker"):
            async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                status = await wait_for_status(http, order_id, {"confirmed", "failed"})
                events = (await http.get(f"/api/orders/{order_id}/events")).json()["events"]

    assert status == "confirmed"
    assert [e["status"] for e in events] == [
        "pending", "routing", "building", "submitted", "confirmed"
    ]
