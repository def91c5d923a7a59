"""Submitting, reading and listing orders; tokens; quotes."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from order_engine.domain.tokens import JUP
from order_engine.market.pool_codec import AnyPool, mints_of
from order_engine.market.venues import SimulatedVenue
from tests.stack import Stack


async def test_submit_answers_at_once_and_the_order_is_already_stored(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/orders", json={"inputToken": "usdc", "outputToken": "SOL", "amount": 25}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["message"] == "Order queued successfully"
    assert response.headers["location"] == f"/api/orders/{body['orderId']}"

    order = (await client.get(response.headers["location"])).json()
    assert order["orderId"] == body["orderId"]
    assert order["inputToken"] == "USDC"
    assert order["outputToken"] == "SOL"
    assert order["amount"] == "25"
    assert order["slippageBps"] == 50
    assert order["type"] == "market"
    assert set(order) >= {
        "quotes", "route", "expectedAmountOut", "minAmountOut", "amountOut", "executionPrice",
        "txHash", "failureReason", "createdAt", "updatedAt", "attempts", "status",
    }


async def test_execute_alias_submits_too(stack: Stack, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/orders/execute",
        json={"inputToken": "JUP", "outputToken": "USDC", "amount": "100", "slippageBps": 100},
    )
    assert response.status_code == 201
    order = await stack.wait_terminal(response.json()["orderId"])
    assert order["status"] == "confirmed"
    assert order["slippageBps"] == 100


async def test_confirmed_order_respects_its_minimum(stack: Stack) -> None:
    order_id = await stack.submit(inputToken="SOL", outputToken="USDT", amount="3",
                                  slippageBps=30)
    order = await stack.wait_terminal(order_id)
    assert order["status"] == "confirmed"
    assert Decimal(order["amountOut"]) >= Decimal(order["minAmountOut"])
    assert Decimal(order["minAmountOut"]) >= Decimal(order["expectedAmountOut"]) * Decimal(
        "0.997"
    ) - Decimal("0.000001")
    exact = Decimal(order["amountOut"]) / Decimal("3")
    price = Decimal(order["executionPrice"])
    assert price <= exact  # truncated, never rounded up
    assert exact - price < Decimal("1e-12")


async def test_list_is_newest_first_with_a_working_cursor(
    stack: Stack, other_key: str
) -> None:
    ids = [await stack.submit(key=other_key, amount=str(i + 1)) for i in range(5)]
    async with stack.client(other_key) as http:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/orders", params=params)).json()
            assert len(page["orders"]) <= 2
            seen += [o["orderId"] for o in page["orders"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
    mine = [i for i in seen if i in ids]
    assert mine == list(reversed(ids))
    assert len(seen) == len(set(seen))


async def test_list_filters_by_status(stack: Stack, other_key: str) -> None:
    order_id = await stack.submit(key=other_key)
    await stack.wait_terminal(order_id, key=other_key)
    async with stack.client(other_key) as http:
        confirmed = (await http.get("/api/orders", params={"status": "confirmed"})).json()
        pending = (await http.get("/api/orders", params={"status": "pending"})).json()
    assert order_id in {o["orderId"] for o in confirmed["orders"]}
    assert all(o["status"] == "confirmed" for o in confirmed["orders"])
    assert order_id not in {o["orderId"] for o in pending["orders"]}


async def test_tokens_lists_the_supported_tokens(client: httpx.AsyncClient) -> None:
    tokens = (await client.get("/api/tokens")).json()["tokens"]
    by_symbol = {t["symbol"]: t for t in tokens}
    assert set(by_symbol) >= {"SOL", "USDC", "USDT", "BONK", "JUP"}
    assert by_symbol["USDC"]["mint"] == "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    assert by_symbol["BONK"]["decimals"] == 5


async def test_quote_shows_every_venue_and_the_best_route(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/quote", params={"inputToken": "SOL", "outputToken": "USDC", "amount": "10"}
    )
    assert response.status_code == 200
    quote = response.json()
    assert {q["venue"] for q in quote["quotes"]} == {"raydium", "meteora"}
    best = max(quote["quotes"], key=lambda q: Decimal(q["amountOut"]))
    # The route (split across venues if that pays) is never worse than one venue alone.
    assert Decimal(quote["expectedAmountOut"]) >= Decimal(best["amountOut"])
    assert Decimal(quote["bestSingleVenue"]["amountOut"]) == Decimal(best["amountOut"])
    assert sum(Decimal(leg["percent"]) for leg in quote["route"]
               if leg["inputToken"] == "SOL") == 100
    assert Decimal(quote["minAmountOut"]) < Decimal(quote["expectedAmountOut"])
    # Selling SOL for USDC near the genesis price of ~150.
    assert Decimal("140") < Decimal(best["price"]) < Decimal("160")


@pytest.fixture
def no_jup_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The venues serve no pool that trades JUP (on the genesis market every pair is
    connected within three hops)."""
    serve = SimulatedVenue.pools

    async def pools(venue: SimulatedVenue) -> list[AnyPool]:
        return [p for p in await serve(venue) if JUP.mint not in mints_of(p)]

    monkeypatch.setattr(SimulatedVenue, "pools", pools)


@pytest.mark.usefixtures("no_jup_pools")
async def test_quote_for_a_pair_without_pools_says_so(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/quote", params={"inputToken": "BONK", "outputToken": "JUP", "amount": "10"}
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("no_route")


@pytest.mark.usefixtures("no_jup_pools")
async def test_order_for_a_pair_without_pools_fails_at_once(stack: Stack) -> None:
    order_id = await stack.submit(inputToken="BONK", outputToken="JUP", amount="1000")
    order = await stack.wait_terminal(order_id)
    assert order["status"] == "failed"
    assert order["attempts"] == 1
    assert "no pool or path of up to three hops" in order["failureReason"]
    statuses = [e["status"] for e in await stack.events(order_id)]
    assert statuses == ["pending", "routing", "failed"]
