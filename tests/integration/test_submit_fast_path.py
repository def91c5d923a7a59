"""POST /api/orders: a plain submission is answered ahead of FastAPI (routes.submit_fast),
everything else by the FastAPI route; both must answer alike and store the same order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from order_engine.api.routes import FAST_BODY_LIMIT
from tests.stack import API_KEY, Stack

BODY: dict[str, Any] = {"inputToken": "sol", "outputToken": "USDC", "amount": 1.25,
                        "slippageBps": 70}
JSON = "application/json"


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body[:10]
    yield body[10:]


def _request(shape: str) -> dict[str, Any]:
    """httpx.post arguments for BODY sent in the given shape."""
    body = orjson.dumps(BODY)
    if shape == "fast":
        return {"content": body, "headers": {"Content-Type": JSON}}
    if shape == "fast, charset":
        return {"content": body, "headers": {"Content-Type": "Application/JSON; charset=utf-8"}}
    if shape == "fast, X-API-Key":
        return {"content": body, "headers": {"Content-Type": JSON, "Authorization": "",
                                             "X-API-Key": API_KEY}}
    if shape == "route: +json content type":
        return {"content": body, "headers": {"Content-Type": "application/order+json"}}
    if shape == "route: chunked":
        return {"content": _chunks(body), "headers": {"Content-Type": JSON}}
    if shape == "route: large body":
        padded = body[:-1] + b" " * FAST_BODY_LIMIT + b"}"
        return {"content": padded, "headers": {"Content-Type": JSON}}
    raise AssertionError(shape)


@pytest.mark.parametrize("shape", ["fast", "fast, charset", "fast, X-API-Key",
                                   "route: +json content type", "route: chunked",
                                   "route: large body"])
@pytest.mark.parametrize("path", ["/api/orders", "/api/orders/execute"])
async def test_every_path_answers_and_stores_alike(
    stack: Stack, client: httpx.AsyncClient, shape: str, path: str
) -> None:
    response = await client.post(path, **_request(shape))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert set(body) == {"orderId", "status", "message"}
    assert (body["status"], body["message"]) == ("pending", "Order queued successfully")
    assert response.headers["location"] == f"/api/orders/{body['orderId']}"
    assert "idempotent-replayed" not in response.headers

    order = (await client.get(response.headers["location"])).json()
    assert (order["type"], order["inputToken"], order["outputToken"], order["amount"],
            order["slippageBps"]) == ("market", "SOL", "USDC", "1.25", 70)
    events = await stack.events(body["orderId"])
    assert (events[0]["seq"], events[0]["status"], events[0]["attempt"]) == (1, "pending", 0)


async def test_a_bad_key_with_a_good_body_is_still_401(stack: Stack) -> None:
    async with stack.client("oe_not_a_key") as http:
        response = await http.post("/api/orders", json=BODY)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["instance"] == "/api/orders"


async def test_a_burst_is_committed_and_queued_once_per_order(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """Concurrent submissions share group commits: each gets its own order, its first
    event and its job, and each executes."""
    answers = await asyncio.gather(*(
        client.post("/api/orders", json={**BODY, "amount": f"0.{i + 1:03d}"})
        for i in range(60)
    ))
    assert {a.status_code for a in answers} == {201}
    ids = [a.json()["orderId"] for a in answers]
    assert len(set(ids)) == len(ids)

    rows = await stack.services.pg.fetch(
        "SELECT o.id, o.amount_in, o.api_key_id, count(e.*) FILTER (WHERE e.seq = 1 AND "
        "e.status = 'pending') AS firsts FROM orders o JOIN order_events e ON e.order_id = "
        "o.id WHERE o.id = ANY($1::uuid[]) GROUP BY o.id",
        [uuid.UUID(i) for i in ids],
    )
    assert len(rows) == len(ids)
    assert all(row["firsts"] == 1 for row in rows)
    assert len({row["api_key_id"] for row in rows}) == 1
    # SOL has 9 decimals: 0.001 .. 0.060 SOL.
    assert sorted(int(row["amount_in"]) for row in rows) == [
        (i + 1) * 1_000_000 for i in range(60)
    ]

    finished = await asyncio.gather(*(stack.wait_terminal(i, timeout=60) for i in ids))
    assert {order["status"] for order in finished} == {"confirmed"}


@pytest.mark.parametrize("amount", [18446744073709551616, 10**30, -(2**64)])
async def test_amounts_past_64_bits_get_the_routes_answer(
    client: httpx.AsyncClient, amount: int
) -> None:
    """The fast path parses as the route does (exact integers, no float in between), so
    such amounts get the route's 422 on the amount."""
    response = await client.post("/api/orders", content=orjson.dumps({**BODY, "amount": 0})
                                 .replace(b'"amount":0', f'"amount":{amount}'.encode()),
                                 headers={"Content-Type": JSON})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["amount"]
