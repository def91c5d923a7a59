"""An order's price-impact limit (issue 12, item 7): the largest order allowed moved the
SOL/USDC pool from ~150 to 0.0025 and most of the next small orders failed on slippage.
Over its limit an order fails before anything is signed or sent; a request may raise the
limit up to the server's ceiling; the quote says whether a route is over it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from order_engine.config import Settings
from order_engine.domain.orders import OrderStatus, OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.market.pool_codec import reserves_of
from order_engine.store.repository import NewOrder
from order_engine.worker.settings import build_executor
from tests.conftest import fresh_database
from tests.stack import Stack, running_stack

LARGEST = "1000000000"  # MAX_ORDER_AMOUNT's default, in SOL


async def _reserves(stack: Stack) -> dict[str, tuple[int, int]]:
    return {p.pool_id: reserves_of(p) for p in await stack.services.chain.get_pools()}


async def test_the_largest_order_fails_on_its_impact_and_leaves_the_pools_alone(
    stack: Stack,
) -> None:
    # A key of its own: the largest order is all the exposure a key may have in SOL.
    key, _ = await stack.services.api_keys.create("largest-order")
    before = await _reserves(stack)

    order_id = await stack.submit(key, inputToken="SOL", outputToken="USDC", amount=LARGEST)
    order = await stack.wait_terminal(order_id, key=key)

    assert order["status"] == "failed"
    assert order["maxPriceImpactBps"] == 500  # MAX_PRICE_IMPACT_BPS, stored on submission
    impact = order["priceImpactPct"]
    assert Decimal(impact) > 99  # the route it would have taken, as the order shows it
    assert order["failureReason"] == (
        f"price_impact_too_high: price impact {impact}% is over the order's limit 5.00% "
        "(maxPriceImpactBps); nothing was sent")
    assert order["txHash"] is None
    assert order["attempts"] == 1  # permanent: not retried
    assert order["route"]  # what the router found is on the order
    events = await stack.events(order_id, key=key)
    assert [e["status"] for e in events] == ["pending", "routing", "failed"]
    assert events[-1]["reason"] == order["failureReason"]
    assert events[-1]["priceImpactPct"] == impact
    assert await _reserves(stack) == before

    # Everyone else's orders go on as if nothing had happened.
    small = await asyncio.gather(*(stack.submit(amount="0.5") for _ in range(10)))
    finished = await asyncio.gather(*(stack.wait_terminal(o) for o in small))
    assert [o["status"] for o in finished] == ["confirmed"] * 10
    for done in finished:
        assert Decimal(done["executionPrice"]) > 100  # SOL still ~150 USDC


async def _amount_with_impact(http: httpx.AsyncClient, low: Decimal, high: Decimal) -> tuple[
    str, dict[str, Any]
]:
    """A JUP -> USDC amount whose quoted impact is between `low` and `high` percent
    (JUP/USDC pools are the only route)."""
    amount = Decimal(1000)
    for _ in range(60):
        response = await http.get("/api/quote", params={
            "inputToken": "JUP", "outputToken": "USDC", "amount": str(amount)})
        assert response.status_code == 200, response.text
        quote: dict[str, Any] = response.json()
        impact = Decimal(quote["priceImpactPct"])
        if low < impact < high:
            return str(amount), quote
        amount = amount * 2 if impact <= low else amount * 3 / 4
        amount = amount.quantize(Decimal(1))
    raise AssertionError("no amount with that impact")


@pytest.fixture(scope="module")
async def own_market(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    """A stack on a database (and market) of its own: an order with 7-12% impact leaves
    the JUP/USDC pools far apart (no arbitrage runs in tests), which would fail the
    ordinary orders of later tests on their impact."""
    async with fresh_database() as url, running_stack(make_settings(database_url=url)) as s:
        yield s


async def test_an_order_that_raises_its_limit_goes_through(own_market: Stack) -> None:
    stack = own_market
    async with stack.client() as client:
        await _raise_the_limit(stack, client)


async def _raise_the_limit(stack: Stack, client: httpx.AsyncClient) -> None:
    amount, quote = await _amount_with_impact(client, Decimal(7), Decimal(12))
    assert quote["maxPriceImpactBps"] == 500
    assert quote["priceImpactOverLimit"] is True
    raised = (await client.get("/api/quote", params={
        "inputToken": "JUP", "outputToken": "USDC", "amount": amount,
        "maxPriceImpactBps": 1500})).json()
    assert raised["maxPriceImpactBps"] == 1500
    assert raised["priceImpactOverLimit"] is False

    refused = await stack.wait_terminal(await stack.submit(
        inputToken="JUP", outputToken="USDC", amount=amount, maxPriceImpactBps=700))
    assert refused["status"] == "failed"
    assert refused["maxPriceImpactBps"] == 700
    assert "is over the order's limit 7.00% (maxPriceImpactBps)" in refused["failureReason"]

    allowed = await stack.wait_terminal(await stack.submit(
        inputToken="JUP", outputToken="USDC", amount=amount, maxPriceImpactBps=1500,
        slippageBps=300))
    assert allowed["status"] == "confirmed", allowed["failureReason"]
    assert allowed["maxPriceImpactBps"] == 1500
    assert Decimal(7) < Decimal(allowed["priceImpactPct"]) <= 15


async def test_a_small_order_is_untouched_by_the_limit(client: httpx.AsyncClient) -> None:
    quote = (await client.get("/api/quote", params={
        "inputToken": "SOL", "outputToken": "USDC", "amount": "1"})).json()
    assert quote["priceImpactOverLimit"] is False
    assert quote["maxPriceImpactBps"] == 500


@pytest.mark.parametrize("value", [0, -5, 1501, 10_001, "500", 50.5, True])
async def test_a_limit_out_of_range_is_422_naming_the_field(
    client: httpx.AsyncClient, value: object
) -> None:
    body = {"inputToken": "SOL", "outputToken": "USDC", "amount": "1",
            "maxPriceImpactBps": value}
    for headers in ({}, {"Idempotency-Key": f"impact-{value!r}"}):  # both submit paths
        response = await client.post("/api/orders", json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        errors = response.json()["errors"]
        assert [e["field"] for e in errors] == ["maxPriceImpactBps"]
        if isinstance(value, int) and not isinstance(value, bool):
            assert errors[0]["message"] == (
                "must be from 1 to 1500 basis points (15.00%, this server's "
                "MAX_PRICE_IMPACT_BPS_CEILING)")


async def test_the_quote_refuses_a_limit_out_of_range(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/quote", params={
        "inputToken": "SOL", "outputToken": "USDC", "amount": "1",
        "maxPriceImpactBps": 20_000})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["maxPriceImpactBps"]


async def test_both_submit_paths_store_the_limit(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    body = {"inputToken": "SOL", "outputToken": "USDC", "amount": "0.25",
            "maxPriceImpactBps": 42}
    fast = await client.post("/api/orders", json=body)  # the fast path (no key)
    plain = await client.post("/api/orders", json=body,
                              headers={"Idempotency-Key": "impact-both-paths"})
    assert fast.status_code == plain.status_code == 201
    for response in (fast, plain):
        order = await stack.wait_terminal(response.json()["orderId"])
        assert order["maxPriceImpactBps"] == 42
        assert order["status"] == "confirmed"

    # The limit is part of what the Idempotency-Key's order is.
    again = await client.post("/api/orders", json={**body, "maxPriceImpactBps": 43},
                              headers={"Idempotency-Key": "impact-both-paths"})
    assert again.status_code == 422
    assert again.json()["type"].endswith("idempotency-key-reused")


async def test_an_order_from_before_limits_is_held_to_the_workers_default(
    stack: Stack,
) -> None:
    # As an order stored before migration 0007: no limit of its own (NULL).
    key, key_id = await stack.services.api_keys.create("before-limits")
    order, _ = await stack.services.orders.create(NewOrder(
        key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9 * 10**9, 50))
    assert order.max_price_impact_bps is None
    before = await _reserves(stack)

    status = await build_executor(stack.services).execute(order.id)

    assert status is OrderStatus.FAILED
    shown = await stack.wait_terminal(str(order.id), key=key)
    assert shown["maxPriceImpactBps"] is None
    assert shown["failureReason"].endswith(
        "is over the order's limit 5.00% (the default, MAX_PRICE_IMPACT_BPS); nothing was sent")
    assert await _reserves(stack) == before
