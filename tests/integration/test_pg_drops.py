"""PostgreSQL dropping the service's connections while orders flow fails no order and
answers no submission 5xx: a broken connection is discarded and the work done again."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from order_engine.config import Settings
from order_engine.store.db import to_libpq_url
from tests.stack import running_stack

TERMINATE = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE datname = current_database() AND application_name = 'order-engine'")
ROUNDS = 3
ROUND_S = 2.0
DROP_EVERY_S = 0.3
CLIENTS = 12


async def _drop_connections(database_url: str, stop: asyncio.Event) -> int:
    """Every DROP_EVERY_S, terminate every backend of the service (API and worker)."""
    admin = await asyncpg.connect(to_libpq_url(database_url),
                                  server_settings={"application_name": "oe-test-dropper"})
    dropped = 0
    try:
        while not stop.is_set():
            dropped += int(await admin.fetchval(TERMINATE))
            await asyncio.sleep(DROP_EVERY_S)
    finally:
        await admin.close()
    return dropped


async def _client(http: httpx.AsyncClient, n: int, stop: asyncio.Event,
                  answers: Counter[int], order_ids: list[str]) -> None:
    """Submits until told to stop: every other order with an Idempotency-Key (the route's
    claimed path), the others plain (the fast path's group commit)."""
    i = 0
    while not stop.is_set():
        i += 1
        headers = {"Idempotency-Key": f"drop-{uuid.uuid4()}"} if i % 2 else {}
        body = {"inputToken": "SOL", "outputToken": "USDC", "amount": f"0.{n + 10:02d}{i:04d}",
                "slippageBps": 300}
        response = await http.post("/api/orders", json=body, headers=headers)
        answers[response.status_code] += 1
        if response.status_code == 201:
            order_ids.append(response.json()["orderId"])


async def test_dropped_connections_fail_no_order_and_answer_no_5xx(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    answers: Counter[int] = Counter()
    order_ids: list[str] = []
    async with running_stack(settings) as stack, stack.client() as http:
        for _ in range(ROUNDS):
            stop = asyncio.Event()
            dropper = asyncio.create_task(_drop_connections(settings.database_url, stop))
            clients = [asyncio.create_task(_client(http, n, stop, answers, order_ids))
                       for n in range(CLIENTS)]
            await asyncio.sleep(ROUND_S)
            stop.set()
            await asyncio.gather(*clients)
            assert await dropper > 0
        finished: list[dict[str, Any]] = await asyncio.gather(
            *(stack.wait_terminal(order_id, timeout=90) for order_id in order_ids))
    failed = Counter(o["failureReason"] for o in finished if o["status"] != "confirmed")
    assert {code: n for code, n in answers.items() if code != 201} == {}
    assert failed == Counter()
    assert len(order_ids) > 50
