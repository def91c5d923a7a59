"""What is refused before a request's body is read: an oversize body, a missing or unknown
API key.

FastAPI reads a route's body before it resolves the route's dependencies, the API key
among them: four unauthenticated `POST /api/orders` of 100 MiB each took the API from 148
to 808 MiB before each got its 401. Here, ahead of FastAPI, a request to /api that carries
a body is answered 413 when its declared length is over MAX_BODY_BYTES and 401 when its key
is missing or unknown, without reading a byte of it; a body sent without a length
(chunked) is read up to the limit and no further. What passes is handed on as it came
(a body read here is put back in front of the stream).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from order_engine.api.auth import KEY_ID_STATE, Authenticator, key_from
from order_engine.api.problems import problem_error_response, problem_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole body, or None if the client went away first; BodyTooLarge past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` with the body already read put back in front of it."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem_response(
        413, "Content too large", f"the request body is over {limit} bytes (MAX_BODY_BYTES)",
        type_="content-too-large", instance=scope["path"], headers={"Connection": "close"})
    await response(scope, receive, send)


async def gate(authenticator: Authenticator | None, max_body_bytes: int, scope: Scope,
               receive: Receive, send: Send) -> Receive | None:
    """None when the request was answered here; else the receive to go on with."""
    if scope["method"] not in BODY_METHODS or not scope["path"].startswith("/api/"):
        return receive
    headers = Headers(scope=scope)
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        await _too_large(scope, receive, send, max_body_bytes)
        return None
    if authenticator is not None:
        try:
            key = key_from(headers)
            key_id = await authenticator.resolve(key)
        except Exception:  # noqa: BLE001 - the route answers it (503), as it always did
            return receive
        if key_id is None:
            response = problem_error_response(authenticator.refusal(key), scope["path"])
            response.headers["Connection"] = "close"  # its body is not read: do not reuse
            await response(scope, receive, send)
            return None
        # The request's own state (uvicorn gives each request a copy): the fast submit
        # path and the routes take the key from here rather than resolve it again.
        scope.setdefault("state", {})[KEY_ID_STATE] = key_id
    if length is None and "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            body = await read_body(receive, max_body_bytes)
        except BodyTooLarge:
            await _too_large(scope, receive, send, max_body_bytes)
            return None
        if body is None:
            return None
        return replaying(body, receive)
    return receive
