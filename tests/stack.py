"""A running API (uvicorn, in this event loop) and worker (arq, in this loop) for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import websockets
from arq.worker import Worker

from order_engine.api.server import api_server
from order_engine.config import Settings
from order_engine.domain.orders import OrderStatus
from order_engine.embedded import free_port
from order_engine.events import EventHub
from order_engine.services import Services, open_services
from order_engine.worker.settings import create_worker

API_KEY = "oe_test_bootstrap_key_0123456789"


@dataclass
class Stack:
    settings: Settings
    base_url: str
    services: Services
    workers: list[Worker] = field(default_factory=list)
    hub: EventHub | None = None  # the API's (how many watchers it holds)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    def client(self, key: str | None = API_KEY) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    async def submit(self, key: str = API_KEY, **body: Any) -> str:
        payload = {"inputToken": "SOL", "outputToken": "USDC", "amount": "1", **body}
        async with self.client(key) as http:
            response = await http.post("/api/orders", json=payload)
        assert response.status_code == 201, response.text
        return str(response.json()["orderId"])

    async def wait_terminal(
        self, order_id: str, timeout: float = 30, key: str = API_KEY
    ) -> dict[str, Any]:
        async with self.client(key) as http:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                order: dict[str, Any] = (await http.get(f"/api/orders/{order_id}")).json()
                if OrderStatus(order["status"]).is_terminal:
                    return order
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"order {order_id} stuck in {order['status']}")
                await asyncio.sleep(0.02)

    async def events(self, order_id: str, key: str = API_KEY) -> list[dict[str, Any]]:
        async with self.client(key) as http:
            response = await http.get(f"/api/orders/{order_id}/events")
        assert response.status_code == 200, response.text
        return list(response.json()["events"])

    async def watch(self, order_id: str, key: str = API_KEY, timeout: float = 30) -> tuple[
        list[dict[str, Any]], int | None
    ]:
        """Every message of /ws/orders/{id} until the server closes; and the close code."""
        messages: list[dict[str, Any]] = []
        async with websockets.connect(
            f"{self.ws_url}/ws/orders/{order_id}",
            additional_headers={"X-API-Key": key},
        ) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(timeout):
                    async for raw in ws:
                        messages.append(orjson.loads(raw))
            code = ws.close_code
        return messages, code


async def _start_worker(settings: Settings) -> tuple[Worker, asyncio.Task[None]]:
    worker = create_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.main())
    return worker, task


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop polling, let the jobs in hand finish, then close (as a SIGTERM would)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=15)
    await worker.close()


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, workers: int = 1) -> AsyncIterator[Stack]:
    port = free_port()
    settings = settings.model_copy(update={"port": port})
    server = api_server(settings.model_copy(update={"host": "127.0.0.1"}),
                        log_level="warning")
    server_task = asyncio.create_task(server.serve())
    while not server.started:
        if server_task.done():
            server_task.result()
        await asyncio.sleep(0.01)
    services = await open_services(settings)
    started = [await _start_worker(settings) for _ in range(workers)]
    try:
        yield Stack(settings, f"http://127.0.0.1:{port}", services, [w for w, _ in started],
                    server.app.state.hub)
    finally:
        for worker, task in started:
            await stop_worker(worker, task)
        server.should_exit = True
        await server_task
        await services.close()
