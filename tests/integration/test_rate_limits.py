"""Per-key rate limits: a key over its limit gets 429 problem details with Retry-After and
the IETF RateLimit fields, before its body is read; other keys, and the key's other kinds
of request, are unaffected; the count is shared by every API process."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets
from pydantic import ValidationError

from order_engine.api.rate_limits import Policy, RateLimiter
from order_engine.config import Settings, parse_limits
from tests.integration.test_gate import _head, _raw
from tests.stack import API_KEY, Stack, running_stack

ORDER = {"inputToken": "SOL", "outputToken": "USDC", "amount": "0.01"}
LIMITED = {"rate_limit_orders": "5/minute", "rate_limit_quotes": "3/minute",
           "rate_limit_reads": "4/minute", "rate_limit_anonymous": "3/minute",
           "max_websockets_per_key": 3,
           "max_firehoses_per_key": 2}


@pytest.fixture(scope="module")
async def limited(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    async with running_stack(make_settings(**LIMITED), workers=0) as stack:
        yield stack


async def _key(stack: Stack) -> str:
    key, _ = await stack.services.api_keys.create("rate-limit test")
    return key


async def _submit_many(stack: Stack, key: str, count: int) -> list[httpx.Response]:
    async with stack.client(key) as http:
        return list(await asyncio.gather(
            *(http.post("/api/orders", json=ORDER) for _ in range(count))))


async def test_a_key_over_its_order_limit_gets_429_problems(limited: Stack) -> None:
    key = await _key(limited)
    answers = await _submit_many(limited, key, 8)
    statuses = sorted(a.status_code for a in answers)
    # Sent together, counted together: exactly the limit is accepted.
    assert statuses == [201] * 5 + [429] * 3
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["status"] == 429
    assert problem["type"].endswith("rate-limited")
    assert "RATE_LIMIT_ORDERS" in problem["detail"]
    assert "5 per 60 s" in problem["detail"]
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.headers["ratelimit-policy"] == '"orders";q=5;w=60'
    match = re.fullmatch(r'"orders";r=0;t=(\d+)', refused.headers["ratelimit"])
    assert match
    assert int(match[1]) == retry_after
    accepted = next(a for a in answers if a.status_code == 201)
    assert accepted.headers["ratelimit-policy"] == '"orders";q=5;w=60'


async def test_one_key_spent_leaves_other_keys_and_other_requests_alone(limited: Stack) -> None:
    spent, fresh = await _key(limited), await _key(limited)
    assert [a.status_code for a in await _submit_many(limited, spent, 6)].count(429) == 1
    assert {a.status_code for a in await _submit_many(limited, fresh, 5)} == {201}
    async with limited.client(spent) as http:
        # Reads and quotes are limits of their own.
        assert (await http.get("/api/tokens")).status_code == 200
        quote = await http.get("/api/quote", params=ORDER)
        assert quote.status_code == 200
        assert quote.headers["ratelimit-policy"] == '"quotes";q=3;w=60'
        quotes = [(await http.get("/api/quote", params=ORDER)).status_code for _ in range(3)]
        assert quotes == [200, 200, 429]
        assert (await http.get("/api/tokens")).status_code == 200


async def test_reads_have_their_limit(limited: Stack) -> None:
    key = await _key(limited)
    async with limited.client(key) as http:
        statuses = [(await http.get("/api/orders")).status_code for _ in range(5)]
        assert statuses == [200] * 4 + [429]
        refused = await http.get("/api/orders")
        assert "RATE_LIMIT_READS" in refused.json()["detail"]
        assert refused.headers["ratelimit-policy"] == '"reads";q=4;w=60'


async def test_what_needs_no_key_is_limited_per_client_address(limited: Stack) -> None:
    async with limited.client(None) as anonymous:
        statuses = [(await anonymous.get(path)).status_code
                    for path in ("/healthz", "/metrics", "/healthz", "/readyz")]
        assert statuses == [200, 200, 200, 429]
        refused = await anonymous.get("/metrics")
        assert refused.status_code == 429
        assert "this client address's anonymous rate limit" in refused.json()["detail"]
        assert "RATE_LIMIT_ANONYMOUS" in refused.json()["detail"]
    # A key's requests are its own key's to count.
    async with limited.client(await _key(limited)) as keyed:
        assert (await keyed.get("/api/tokens")).status_code == 200


async def test_a_spent_key_is_refused_before_its_body_is_sent(limited: Stack) -> None:
    key = await _key(limited)
    await _submit_many(limited, key, 5)
    # It announces a body and sends none of it: the 429 comes at once.
    status, answer = await _raw(limited, _head(2_000, key=key))
    assert status == 429
    assert b"application/problem+json" in answer
    assert b"retry-after" in answer.lower()


async def test_the_limit_is_shared_by_every_api_process(
    limited: Stack, make_settings: Callable[..., Settings]
) -> None:
    # A second API on the same Redis prefix and database: the count is one.
    second_settings = limited.settings.model_copy(update={"port": 0})
    async with running_stack(second_settings, workers=0) as second:
        key = await _key(limited)
        answers = await asyncio.gather(_submit_many(limited, key, 4),
                                       _submit_many(second, key, 4))
        statuses = [a.status_code for batch in answers for a in batch]
        assert statuses.count(201) == 5
        assert statuses.count(429) == 3


async def _open(stack: Stack, key: str, path: str = "/ws/orders") -> Any:
    return await websockets.connect(f"{stack.ws_url}{path}",
                                    additional_headers={"X-API-Key": key})


async def _refused(socket: Any) -> tuple[int | None, str]:
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(socket.recv(), 5)
    return socket.close_code, socket.close_reason or ""


async def test_a_key_holds_at_most_its_firehoses(limited: Stack) -> None:
    key, other = await _key(limited), await _key(limited)
    first, second = await _open(limited, key), await _open(limited, key)
    try:
        await first.recv()  # the firehose's snapshot: the socket is in
        await second.recv()
        code, reason = await _refused(await _open(limited, key))
        assert code == 4429
        assert "MAX_FIREHOSES_PER_KEY" in reason
        # Another key is not affected.
        theirs = await _open(limited, other)
        await theirs.recv()
        await theirs.close()
        # A socket that closes gives its slot back.
        await first.close()
        async with asyncio.timeout(5):
            while True:
                again = await _open(limited, key)
                try:
                    await asyncio.wait_for(again.recv(), 5)
                    break
                except websockets.ConnectionClosed:
                    await asyncio.sleep(0.05)  # its slot is being released
        await again.close()
    finally:
        await first.close()
        await second.close()


async def test_a_key_holds_at_most_its_order_sockets(limited: Stack) -> None:
    key = await _key(limited)
    # No worker runs in this stack: the order stays pending, its sockets open.
    order_id = (await _submit_many(limited, key, 1))[0].json()["orderId"]
    path = f"/ws/orders/{order_id}"
    held = [await _open(limited, key, path) for _ in range(3)]
    try:
        for socket in held:
            assert orjson.loads(await socket.recv())["status"] == "pending"
        code, reason = await _refused(await _open(limited, key, path))
        assert code == 4429
        assert "MAX_WEBSOCKETS_PER_KEY" in reason
        # Firehoses are counted apart.
        firehose = await _open(limited, key)
        assert orjson.loads(await firehose.recv())["type"] == "snapshot"
        await firehose.close()
    finally:
        for socket in held:
            await socket.close()


async def test_limits_are_let_through_when_redis_does_not_answer() -> None:
    # A Redis that refuses connections (nothing listens on port 1): the limit is not
    # checked, and the request is let through rather than refused (the first finds out;
    # the next ones, for a while, do not even wait to).
    limiter = RateLimiter("redis://127.0.0.1:1/0", "oe-test-nowhere")
    try:
        policy = Policy("orders", "RATE_LIMIT_ORDERS", parse_limits("1/minute"))
        assert [await limiter.check(policy, uuid.uuid4()) for _ in range(3)] == [
            None, None, None]
    finally:
        await limiter.close()


def test_a_bad_limit_setting_is_refused_with_the_expected_notation() -> None:
    with pytest.raises(ValidationError, match=r"expected e\.g\. '100/second'"):
        Settings(_env_file=None, rate_limit_orders="lots")
    assert Settings(_env_file=None, rate_limit_orders="").rate_limit_orders == ""
    assert [i.amount for i in parse_limits("10/second;600/minute")] == [10, 600]
    two = Policy("orders", "RATE_LIMIT_ORDERS", parse_limits("10/second;600/minute"))
    assert two.header == '"orders";q=10;w=1, "orders-60s";q=600;w=60'


async def test_default_limits_apply_to_the_bootstrap_key(
    make_settings: Callable[..., Settings]
) -> None:
    # The defaults (not the tests' unlimited settings) are what a fresh service runs with.
    defaults = Settings(_env_file=None)
    settings = make_settings(rate_limit_orders=defaults.rate_limit_orders,
                             rate_limit_reads=defaults.rate_limit_reads,
                             rate_limit_quotes=defaults.rate_limit_quotes)
    async with running_stack(settings, workers=0) as stack, stack.client(API_KEY) as http:
        answer = await http.get("/api/tokens")
        assert answer.headers["ratelimit-policy"] == '"reads";q=50;w=1'


async def test_refusals_are_answered_after_the_delay_and_others_are_not_held(
    make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(rate_limit_orders="1/minute", refusal_delay_s=0.5)
    async with running_stack(settings, workers=0) as stack:
        key, other = await _key(stack), await _key(stack)
        await _submit_many(stack, key, 1)
        loop = asyncio.get_running_loop()
        done: list[tuple[str, int]] = []

        async def timed(name: str, answer: Any) -> None:
            done.append((name, (await answer).status_code))

        async with stack.client(key) as spent, stack.client(None) as anonymous, \
                stack.client(other) as fresh:
            started = loop.time()
            await asyncio.gather(
                timed("over the limit", spent.post("/api/orders", json=ORDER)),
                timed("no key", anonymous.get("/api/orders")),
                timed("another key", fresh.post("/api/orders", json=ORDER)))
            elapsed = loop.time() - started
        # The other key's order went through while the refusals were held.
        assert done[0] == ("another key", 201)
        assert sorted(done[1:]) == [("no key", 401), ("over the limit", 429)]
        assert elapsed >= 0.5
        code, _ = await _refused(await _open(stack, "oe_not-a-key"))
        assert code == 4401
