"""A key's exposure (issue 12, item 7): the input of its unfinished orders, per input
token, may not pass MAX_KEY_EXPOSURE; over it a submission is a 409 problem that names the
limit, the exposure and the setting. No worker here: orders stay pending, so they count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import text

from order_engine.config import Settings
from tests.stack import API_KEY, Stack, running_stack


@pytest.fixture(scope="module")
async def capped(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    async with running_stack(make_settings(max_key_exposure="10"), workers=0) as running:
        yield running


async def _exposure(stack: Stack, key: str) -> dict[str, int]:
    key_id = await stack.services.api_keys.lookup(key)
    async with stack.services.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT input_mint, open_amount FROM key_exposure WHERE api_key_id = :k"),
            {"k": key_id})
        return {mint: int(amount) for mint, amount in rows}


async def test_orders_past_the_limit_are_refused_naming_it(capped: Stack) -> None:
    key, _ = await capped.services.api_keys.create("exposure-1")
    async with capped.client(key) as http:
        first = await http.post("/api/orders", json={
            "inputToken": "SOL", "outputToken": "USDC", "amount": "6"})
        assert first.status_code == 201, first.text
        for headers in ({}, {"Idempotency-Key": "over"}):  # both submit paths
            over = await http.post("/api/orders", headers=headers, json={
                "inputToken": "SOL", "outputToken": "USDC", "amount": "4.5"})
            assert over.status_code == 409, over.text
            assert over.headers["content-type"].startswith("application/problem+json")
            problem = over.json()
            assert problem["type"].endswith("/exposure-limit")
            assert problem["detail"] == (
                "this key's unfinished orders already hold 6 SOL; this order's 4.5 more "
                "would pass the limit of 10 SOL per key (MAX_KEY_EXPOSURE); retry once "
                "some of them are confirmed or failed")
        # Up to the limit exactly, and another token has its own.
        fits = await http.post("/api/orders", headers={"Idempotency-Key": "fits"}, json={
            "inputToken": "SOL", "outputToken": "USDC", "amount": "4"})
        assert fits.status_code == 201, fits.text
        other = await http.post("/api/orders", json={
            "inputToken": "USDC", "outputToken": "SOL", "amount": "10"})
        assert other.status_code == 201, other.text
        listed = (await http.get("/api/orders")).json()["orders"]
    assert len(listed) == 3
    assert await _exposure(capped, key) == {
        "So11111111111111111111111111111111111111112": 10 * 10**9,
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v": 10 * 10**6}


async def test_concurrent_submissions_never_pass_the_limit(capped: Stack) -> None:
    key, _ = await capped.services.api_keys.create("exposure-2")

    async def submit(http: httpx.AsyncClient, n: int) -> int:
        headers = {"Idempotency-Key": f"c{n}"} if n % 3 == 0 else {}
        response = await http.post("/api/orders", headers=headers, json={
            "inputToken": "SOL", "outputToken": "USDC", "amount": "0.7"})
        return response.status_code

    async with capped.client(key) as http:
        codes = await asyncio.gather(*(submit(http, n) for n in range(40)))
    assert sorted(set(codes)) == [201, 409]
    assert codes.count(201) == 14  # 14 x 0.7 = 9.8; a 15th would be 10.5
    assert await _exposure(capped, key) == {
        "So11111111111111111111111111111111111111112": 14 * 7 * 10**8}


async def test_finished_orders_free_their_exposure(capped: Stack) -> None:
    key, _ = await capped.services.api_keys.create("exposure-3")
    async with capped.client(key) as http:
        first = await http.post("/api/orders", json={
            "inputToken": "SOL", "outputToken": "USDC", "amount": "10"})
        assert first.status_code == 201
        assert (await http.post("/api/orders", json={
            "inputToken": "SOL", "outputToken": "USDC", "amount": "1"})).status_code == 409
    # A worker runs it to its end (confirmed or failed: either frees it).
    async with running_stack(capped.settings, workers=1) as worked:
        await worked.wait_terminal(first.json()["orderId"], key=key)
    assert await _exposure(capped, key) == {"So11111111111111111111111111111111111111112": 0}
    async with capped.client(key) as http:
        again = await http.post("/api/orders", json={
            "inputToken": "SOL", "outputToken": "USDC", "amount": "10"})
        assert again.status_code == 201, again.text


async def test_the_default_limit_leaves_ordinary_use_alone(stack: Stack) -> None:
    assert stack.settings.max_key_exposure == 10**9
    order = await stack.wait_terminal(await stack.submit(amount="2"))
    assert order["status"] == "confirmed"
    assert "So11111111111111111111111111111111111111112" in await _exposure(stack, API_KEY)
