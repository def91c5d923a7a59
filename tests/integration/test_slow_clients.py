"""Bounds on what a client can make the API hold, over raw sockets against a running API:
the size of a request's head (431), the time its head and body may take (408), idle
connections (closed); a WebSocket is not bound by any of them. And a request with an
`Upgrade: h2c` (`curl --http2`) is served as HTTP/1.1, with its body."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import orjson
import pytest
import websockets

from order_engine.config import Settings
from tests.stack import API_KEY, Stack, running_stack

MAX_HEADER_BYTES = 8_192
HEADER_TIMEOUT_S = 0.5
BODY_TIMEOUT_S = 0.5
KEEP_ALIVE_TIMEOUT_S = 1
PAST_EVERY_TIMEOUT_S = 2.5
ORDER = orjson.dumps({"inputToken": "SOL", "outputToken": "USDC", "amount": "0.01"})


@pytest.fixture(scope="module")
async def bounded(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    settings = make_settings(max_header_bytes=MAX_HEADER_BYTES,
                             header_timeout_s=HEADER_TIMEOUT_S,
                             body_timeout_s=BODY_TIMEOUT_S,
                             keep_alive_timeout_s=KEEP_ALIVE_TIMEOUT_S)
    async with running_stack(settings, workers=0) as stack:
        yield stack


async def _connect(stack: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(stack.base_url)
    return await asyncio.open_connection(url.hostname, url.port)


async def _response(reader: asyncio.StreamReader, head: bytes | None = None,
                    ) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the next response (whose head may be read already)."""
    if head is None:
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (EOF, nothing more sent)."""
    async with asyncio.timeout(15):  # a sanity bound; the timeouts under test are ~1 s
        return await reader.read(1) == b""


async def _trickle_until_answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                  byte: bytes) -> tuple[int, dict[str, str], bytes]:
    """A byte every 0.1 s until the server answers (a slowloris); its answer."""
    answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
    async with asyncio.timeout(15):
        while not answer.done():
            writer.write(byte)
            await writer.drain()
            await asyncio.wait({answer}, timeout=0.1)
    return await _response(reader, answer.result())


async def _healthz(stack: Stack) -> int:
    reader, writer = await _connect(stack)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        async with asyncio.timeout(15):
            status, _, _ = await _response(reader)
        return status
    finally:
        writer.close()


def _problem(body: bytes, status: int, setting: str) -> None:
    problem = orjson.loads(body)
    assert problem["status"] == status
    assert setting in problem["detail"]


async def test_a_head_over_the_limit_gets_431_and_the_connection_is_closed(
    bounded: Stack,
) -> None:
    # Sent in pieces, as a header that keeps growing would be: refused once the incomplete
    # head reaches the limit, with nothing more read.
    reader, writer = await _connect(bounded)
    start = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Grow: "
    writer.write(start)
    for _ in range((MAX_HEADER_BYTES - len(start)) // 1024):
        writer.write(b"a" * 1024)
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write(b"a" * ((MAX_HEADER_BYTES - len(start)) % 1024))
    async with asyncio.timeout(15):
        status, headers, body = await _response(reader)
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    _problem(body, 431, "MAX_HEADER_BYTES")
    assert await _closed(reader)
    writer.close()
    assert await _healthz(bounded) == 200  # and the API serves everyone else


async def test_a_head_within_the_limit_is_served(bounded: Stack) -> None:
    reader, writer = await _connect(bounded)
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: "
    padding = b"a" * (MAX_HEADER_BYTES - len(head) - 4)
    writer.write(head + padding + b"\r\n\r\n")  # exactly MAX_HEADER_BYTES
    async with asyncio.timeout(15):
        status, _, _ = await _response(reader)
    assert status == 200
    writer.close()


async def test_a_slow_head_gets_408_after_the_header_timeout(bounded: Stack) -> None:
    reader, writer = await _connect(bounded)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    status, _, body = await _trickle_until_answered(reader, writer, b"a")
    assert status == 408
    _problem(body, 408, "HEADER_TIMEOUT_S")
    assert await _closed(reader)
    writer.close()


async def test_blank_lines_do_not_keep_a_connection_open(bounded: Stack) -> None:
    # The parser skips empty lines before a request; they must not reset the deadline.
    reader, writer = await _connect(bounded)
    status, _, _ = await _trickle_until_answered(reader, writer, b"\r\n")
    assert status == 408
    assert await _closed(reader)
    writer.close()


async def test_a_body_that_stops_gets_408_after_the_body_timeout(bounded: Stack) -> None:
    reader, writer = await _connect(bounded)
    writer.write(b"POST /api/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                 b"Content-Length: 100\r\n\r\n{")  # promises 100 bytes, sends 1
    async with asyncio.timeout(15):
        status, _, body = await _response(reader)
    assert status == 408
    _problem(body, 408, "BODY_TIMEOUT_S")
    assert await _closed(reader)
    writer.close()


async def test_idle_connections_are_closed(bounded: Stack) -> None:
    # One that never sends anything, and one that is idle after a request.
    silent_reader, silent = await _connect(bounded)
    reader, writer = await _connect(bounded)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    async with asyncio.timeout(15):
        status, _, _ = await _response(reader)
    assert status == 200
    assert await _closed(reader)
    assert await _closed(silent_reader)
    writer.close()
    silent.close()


async def test_an_idle_websocket_outlives_every_http_timeout(bounded: Stack) -> None:
    async with websockets.connect(f"{bounded.ws_url}/ws/orders",
                                  additional_headers={"X-API-Key": API_KEY},
                                  ping_interval=None) as ws:
        async with asyncio.timeout(5):
            assert orjson.loads(await ws.recv())["type"] == "snapshot"
        await asyncio.sleep(PAST_EVERY_TIMEOUT_S)
        pong = await ws.ping()
        async with asyncio.timeout(5):
            await pong
        order_id = await bounded.submit()
        async with asyncio.timeout(5):
            event = await ws.recv()
        assert order_id in str(event)


async def test_an_h2c_upgrade_is_ignored_and_the_body_served(bounded: Stack) -> None:
    reader, writer = await _connect(bounded)
    request = (b"POST /api/orders HTTP/1.1\r\nHost: t\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
               b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
               b"Content-Type: application/json\r\n"
               b"Content-Length: " + str(len(ORDER)).encode() + b"\r\n\r\n")
    writer.write(request + ORDER[:5])  # the body split across reads, as it may come
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(ORDER[5:])
    async with asyncio.timeout(15):
        status, _, body = await _response(reader)
    assert status == 201, body
    assert "orderId" in orjson.loads(body)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection goes on
    async with asyncio.timeout(15):
        status, _, _ = await _response(reader)
    assert status == 200
    writer.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_http2_posts_an_order(bounded: Stack) -> None:
    curl = await asyncio.create_subprocess_exec(
        "curl", "--http2", "--silent", "--max-time", "10", "--write-out", "\n%{http_code}",
        "-H", f"Authorization: Bearer {API_KEY}", "-H", "Content-Type: application/json",
        "--data", ORDER.decode(), f"{bounded.base_url}/api/orders",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await curl.communicate()
    body, _, code = out.decode().rpartition("\n")
    assert code == "201", body
    assert "orderId" in orjson.loads(body)


async def test_a_request_that_is_not_http_gets_a_problem(bounded: Stack) -> None:
    reader, writer = await _connect(bounded)
    writer.write(b"HELLO THERE\r\n\r\n")
    async with asyncio.timeout(15):
        status, headers, body = await _response(reader)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert orjson.loads(body)["status"] == 400
    assert await _closed(reader)
    writer.close()
