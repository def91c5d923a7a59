"""API keys: required everywhere under /api and /ws, and a key sees only its own orders."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.stack import API_KEY, Stack

PROTECTED = [
    ("POST", "/api/orders"),
    ("POST", "/api/orders/execute"),
    ("GET", "/api/orders"),
    ("GET", f"/api/orders/{uuid.uuid4()}"),
    ("GET", f"/api/orders/{uuid.uuid4()}/events"),
    ("GET", "/api/tokens"),
    ("GET", "/api/quote?inputToken=SOL&outputToken=USDC&amount=1"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": "Basic x"},
    {"Authorization": "Bearer " + "k" * 500},
])
async def test_routes_refuse_missing_or_bad_keys(
    stack: Stack, method: str, path: str, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_both_key_headers_work(stack: Stack, header: str) -> None:
    value = f"Bearer {API_KEY}" if header == "Authorization" else API_KEY
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.get("/api/tokens", headers={header: value})
    assert response.status_code == 200


async def test_health_needs_no_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_a_key_sees_only_its_own_orders(stack: Stack, other_key: str) -> None:
    mine = await stack.submit()
    theirs = await stack.submit(key=other_key)

    async with stack.client(other_key) as other:
        for path in (f"/api/orders/{mine}", f"/api/orders/{mine}/events"):
            foreign = await other.get(path)
            missing_id = str(uuid.uuid4())
            missing = await other.get(path.replace(mine, missing_id))
            # Indistinguishable from a missing order, down to the body.
            assert foreign.status_code == missing.status_code == 404
            assert foreign.text.replace(mine, "ID") == missing.text.replace(missing_id, "ID")
        listed = (await other.get("/api/orders", params={"limit": 100})).json()["orders"]
    ids = {o["orderId"] for o in listed}
    assert theirs in ids
    assert mine not in ids


async def test_websocket_refuses_bad_keys_with_4401(stack: Stack) -> None:
    order_id = await stack.submit()
    messages, code = await stack.watch(order_id, key="not-a-key")
    assert code == 4401
    assert messages == []


async def test_websocket_accepts_key_in_query(stack: Stack) -> None:
    import orjson
    import websockets

    order_id = await stack.submit()
    url = f"{stack.ws_url}/ws/orders/{order_id}?apiKey={API_KEY}"
    async with websockets.connect(url) as ws:
        first = orjson.loads(await ws.recv())
    assert first["seq"] == 1


@pytest.mark.parametrize("kind", ["missing", "foreign", "malformed"])
async def test_websocket_unknown_or_foreign_order_is_error_then_4404(
    stack: Stack, other_key: str, kind: str
) -> None:
    order_id = {
        "missing": str(uuid.uuid4()),
        "foreign": await stack.submit(key=other_key),
        "malformed": "not-a-uuid",
    }[kind]
    messages, code = await stack.watch(order_id)
    assert code == 4404
    assert [m["type"] for m in messages] == ["error"]
