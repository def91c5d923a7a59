"""Refused before the body is read: oversize bodies (413), missing or unknown keys (401).
And a validation answer that stays small however many errors a body has."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import orjson

from tests.stack import API_KEY, Stack


async def _raw(stack: Stack, head: str, body_parts: tuple[bytes, ...] = ()) -> tuple[int, bytes]:
    """Send the request head (and these body parts, nothing more), read the answer."""
    url = urlsplit(stack.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head.encode())
        for part in body_parts:
            writer.write(part)
        await writer.drain()
        async with asyncio.timeout(5):  # answered without the rest of the body
            status_line = await reader.readline()
            answer = await reader.read(65_536)
        return int(status_line.split()[1]), answer
    finally:
        writer.close()


def _head(length: int | None, key: str | None = None, extra: str = "") -> str:
    lines = ["POST /api/orders HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    return "\r\n".join(lines) + "\r\n" + extra + "\r\n"


async def test_an_unauthenticated_body_is_refused_before_it_is_sent(stack: Stack) -> None:
    # It announces a body and sends none of it: the 401 comes at once.
    status, answer = await _raw(stack, _head(60_000, key=None))
    assert status == 401
    assert b"application/problem+json" in answer
    status, _ = await _raw(stack, _head(60_000, key="oe_not-a-key-of-ours"))
    assert status == 401
    # Over the limit, the size decides first (no key lookup for it).
    status, _ = await _raw(stack, _head(100 * 2**20, key=None))
    assert status == 413


async def test_a_body_over_the_limit_is_refused_before_it_is_sent(stack: Stack) -> None:
    limit = stack.settings.max_body_bytes
    status, answer = await _raw(stack, _head(limit + 1, key=API_KEY))
    assert status == 413
    assert b'"content-too-large"' in answer or b"content-too-large" in answer


async def test_a_chunked_body_is_read_up_to_the_limit_and_no_further(stack: Stack) -> None:
    limit = stack.settings.max_body_bytes
    chunk = b"x" * 4096
    parts = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n",) * (limit // len(chunk) + 2)
    status, _ = await _raw(stack, _head(None, key=API_KEY, extra="Transfer-Encoding: chunked\r\n"),
                           parts)
    assert status == 413


async def test_a_chunked_body_within_the_limit_is_submitted(stack: Stack) -> None:
    body = orjson.dumps({"inputToken": "SOL", "outputToken": "USDC", "amount": "0.01"})
    part = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    status, answer = await _raw(
        stack, _head(None, key=API_KEY, extra="Transfer-Encoding: chunked\r\n"), (part,))
    assert status == 201, answer


async def test_a_body_of_many_unknown_fields_gets_a_short_answer(
    client: httpx.AsyncClient,
) -> None:
    body = {"inputToken": "SOL", "outputToken": "USDC", "amount": "1",
            **{f"f{i}": 1 for i in range(2_000)}}
    response = await client.post("/api/orders", json=body)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert len(errors) == 51
    assert errors[-1] == {"field": "body", "message": "1950 more errors not listed"}
    assert len(response.content) < 10_000


async def test_a_field_named_twice_is_refused_on_every_path(client: httpx.AsyncClient) -> None:
    """`{"amount": "1", "amount": "0.002"}` made a 0.002 order (the last one won)."""
    body = b'{"inputToken": "SOL", "outputToken": "USDC", "amount": "1", "amount": "0.002"}'
    for headers in ({}, {"Idempotency-Key": "dup-fields-1"}):  # fast path, FastAPI route
        response = await client.post("/api/orders", content=body, headers={
            "Content-Type": "application/json", **headers})
        assert response.status_code == 422, response.text
        assert "duplicate field 'amount'" in response.text
    again = await client.post("/api/orders", content=b'{"inputToken": "SOL", "inputToken": '
                              b'"USDC", "outputToken": "USDT", "amount": "1"}',
                              headers={"Content-Type": "application/json"})
    assert again.status_code == 422
