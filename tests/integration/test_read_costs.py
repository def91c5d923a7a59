"""Reads whose cost does not grow with a key's history.

A key is given 20,000 finished orders (the seed `order-engine bench seed-history` uses);
each read the API makes is captured as it is sent and replayed under EXPLAIN ANALYZE, so
the tests see how many rows PostgreSQL touched: a deep page or /api/stats that reads the
key's whole history fails here at any table size, without timing anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from order_engine.bench.history import seed_history
from tests.stack import Stack

HISTORY = 20_000


@pytest.fixture(scope="module")
async def deep_key(stack: Stack) -> str:
    key, _ = await stack.services.api_keys.create("deep-history")
    await seed_history(stack.settings.database_url, key, HISTORY, chunk=10_000)
    return key


@contextlib.contextmanager
def captured_selects() -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs on orders that any engine of this process (the API's among them)
    sends, with their parameters, as sent."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM orders" in statement:
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", capture)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def rows_touched(engine: AsyncEngine, statement: str, parameters: Any) -> int:
    """Rows of orders the statement read (kept or filtered out), by EXPLAIN ANALYZE."""
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        plan = result.scalar_one()[0]["Plan"]
    touched = 0
    for node in _nodes(plan):
        if node.get("Relation Name") == "orders":
            assert node["Node Type"] != "Seq Scan", node
            touched += node["Actual Rows"] * node.get("Actual Loops", 1)
            touched += node.get("Rows Removed by Filter", 0)
            touched += node.get("Rows Removed by Index Recheck", 0)
    return touched


async def _page_at(client: httpx.AsyncClient, key: str, depth: int,
                   status: str | None = None) -> dict[str, Any]:
    """Walk to the page `depth` rows deep, 100 rows a page, as a client would."""
    params: dict[str, Any] = {"limit": 100, **({"status": status} if status else {})}
    headers = {"Authorization": f"Bearer {key}"}
    page: dict[str, Any] = {}
    for _ in range(depth // 100):
        page = (await client.get("/api/orders", params=params, headers=headers)).json()
        params["cursor"] = page["nextCursor"]
    return params


@pytest.mark.parametrize(("depth", "status"), [(100, None), (19_000, None), (200, "failed")])
async def test_a_page_reads_the_same_rows_at_any_depth(
    stack: Stack, client: httpx.AsyncClient, deep_key: str, depth: int, status: str | None,
) -> None:
    params = await _page_at(client, deep_key, depth, status)
    with captured_selects() as seen:
        response = await client.get("/api/orders", params=params,
                                    headers={"Authorization": f"Bearer {deep_key}"})
    assert response.status_code == 200
    page = response.json()["orders"]
    assert len(page) == 100
    assert all(status is None or order["status"] == status for order in page)
    (statement, parameters), = seen
    # The page and the one row that tells whether another follows; nothing skipped over.
    assert await rows_touched(stack.services.engine, statement, parameters) <= 101


async def test_pages_walk_the_whole_history_once(
    client: httpx.AsyncClient, deep_key: str,
) -> None:
    """Orders created in the same instant are ordered by id: none lost or repeated."""
    headers = {"Authorization": f"Bearer {deep_key}"}
    params: dict[str, Any] = {"limit": 100, "status": "failed"}
    seen: list[str] = []
    while True:
        page = (await client.get("/api/orders", params=params, headers=headers)).json()
        seen += [order["orderId"] for order in page["orders"]]
        if page["nextCursor"] is None:
            break
        params["cursor"] = page["nextCursor"]
    assert len(seen) == len(set(seen)) == HISTORY // 40


async def test_stats_read_only_the_window_and_what_is_in_flight(
    stack: Stack, client: httpx.AsyncClient, deep_key: str,
) -> None:
    with captured_selects() as seen:
        response = await client.get("/api/stats", params={"minutes": 10},
                                    headers={"Authorization": f"Bearer {deep_key}"})
    assert response.status_code == 200
    body = response.json()
    # One seeded order every 5 s finished within the last 10 minutes: about 120 of 20,000.
    in_window = sum(bucket["confirmed"] + bucket["failed"] for bucket in body["buckets"])
    assert 100 <= in_window <= 125
    assert body["byStatus"]["confirmed"] + body["byStatus"].get("failed", 0) == in_window
    assert body["inFlight"] == 0
    assert len(seen) == 2
    for statement, parameters in seen:
        assert await rows_touched(stack.services.engine, statement, parameters) <= 125
