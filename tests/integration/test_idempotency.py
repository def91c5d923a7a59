"""Idempotency-Key on POST /api/orders: replay, mismatch, in flight, per key."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import httpx
import pytest
from sqlalchemy import func, select, text

from order_engine.store.models import Order
from tests.stack import Stack

BODY = {"inputToken": "SOL", "outputToken": "USDC", "amount": "0.42", "slippageBps": 60}


def _key() -> str:
    return f"test-{uuid.uuid4()}"


async def _orders_of_key_count(stack: Stack) -> int:
    async with stack.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def test_same_key_and_body_replays_the_first_answer_and_creates_nothing(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    key = _key()
    first = await client.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
    before = await _orders_of_key_count(stack)
    again = [
        await client.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
        for _ in range(3)
    ]

    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    for replay in again:
        assert replay.status_code == 201
        assert replay.json() == first.json()
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["location"] == first.headers["location"]
    assert await _orders_of_key_count(stack) == before
    order = await stack.wait_terminal(first.json()["orderId"])
    assert order["status"] == "confirmed"
    # Replays after the order finished still answer with the first answer.
    late = await client.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
    assert late.json() == first.json()


async def test_equivalent_spellings_count_as_the_same_body(client: httpx.AsyncClient) -> None:
    key = _key()
    first = await client.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
    same = {**BODY, "inputToken": "sol", "amount": 0.42, "type": "market"}
    again = await client.post("/api/orders", json=same, headers={"Idempotency-Key": key})
    assert again.json()["orderId"] == first.json()["orderId"]


async def test_same_key_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    key = _key()
    await client.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
    other = await client.post("/api/orders", json={**BODY, "amount": "0.43"},
                              headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_keys_are_scoped_per_api_key(
    stack: Stack, client: httpx.AsyncClient, other_key: str
) -> None:
    key = _key()
    mine = await client.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
    async with stack.client(other_key) as other:
        theirs = await other.post("/api/orders", json={**BODY, "amount": "9"},
                                  headers={"Idempotency-Key": key})
    assert theirs.status_code == 201
    assert theirs.json()["orderId"] != mine.json()["orderId"]


async def test_a_request_in_flight_with_the_same_key_is_409(stack: Stack) -> None:
    key = _key()
    api_key_id = await stack.services.api_keys.lookup(stack.settings.bootstrap_api_key)
    # Hold the key's lock the way an unfinished first request does.
    digest = hashlib.sha256(f"{api_key_id}:{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    async with stack.services.engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        async with stack.client() as http:
            busy = await http.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
        await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    async with stack.client() as http:
        after = await http.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
    assert after.status_code == 201


async def test_concurrent_duplicates_create_exactly_one_order(stack: Stack) -> None:
    key = _key()
    async with stack.client() as http:
        answers = await asyncio.gather(*(
            http.post("/api/orders", json=BODY, headers={"Idempotency-Key": key})
            for _ in range(10)
        ))
    created = {a.json()["orderId"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    assert {a.status_code for a in answers} <= {201, 409}


@pytest.mark.parametrize("bad", ["", "x" * 256, "naïve"])
async def test_malformed_idempotency_key_is_422(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.post("/api/orders", json=BODY,
                                 headers=[(b"Idempotency-Key", bad.encode("utf-8"))])
    assert response.status_code == 422
    assert "Idempotency-Key" in [e["field"] for e in response.json()["errors"]]
