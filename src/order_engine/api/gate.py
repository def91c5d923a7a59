"""What is refused before a request's body is read: an oversize body, a missing or unknown
API key, a key over its rate limit.

FastAPI reads a route's body before it resolves the route's dependencies, the API key
among them: four unauthenticated `POST /api/orders` of 100 MiB each took the API from 148
to 808 MiB before each got its 401. Here, ahead of FastAPI, a request to /api that carries
a body is answered 413 when its declared length is over MAX_BODY_BYTES and 401 when its key
is missing or unknown, without reading a byte of it; a body sent without a length
(chunked) is read up to the limit and no further. What passes is handed on as it came
(a body read here is put back in front of the stream).
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from order_engine.api.auth import KEY_ID_STATE, Authenticator, key_from
from order_engine.api.problems import problem_error_response, problem_response
from order_engine.api.rate_limits import Policies, RateLimiter
from order_engine.api.security import Headers as HeaderFields

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


def _too_large(limit: int, path: str) -> Response:
    return problem_response(
        413, "Content too large", f"the request body is over {limit} bytes (MAX_BODY_BYTES)",
        type_="content-too-large", instance=path, headers={"Connection": "close"})


class Gate:
    """Ahead of FastAPI, for every request to /api: the checks above, then the key's rate
    limit (api/rate_limits.py), all before a byte of the body is read."""

    def __init__(self, authenticator: Authenticator, limiter: RateLimiter,
                 policies: Policies, max_body_bytes: int, refusal_delay_s: float) -> None:
        self._authenticator = authenticator
        self._limiter = limiter
        self._policies = policies
        self._max_body_bytes = max_body_bytes
        self._refusal_delay_s = refusal_delay_s

    async def _refuse(self, response: Response, scope: Scope, receive: Receive,
                      send: Send, security: HeaderFields) -> None:
        """Answer a refusal after REFUSAL_DELAY_S: a client that sends again as soon as it
        is answered is held to one refusal per delay per connection, and a waiting
        request costs next to nothing. Answered at once, a flood of refusals on 16
        connections took most of a core, and another key's p50 went from 6 to 45 ms."""
        await asyncio.sleep(self._refusal_delay_s)
        response.raw_headers.extend(security)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       security: HeaderFields) -> tuple[Receive, HeaderFields] | None:
        """None when the request was answered here (on `send`, with the `security`
        headers); else the receive to go on with, and the header fields its answer
        carries (the limit's RateLimit-Policy)."""
        path: str = scope["path"]
        if not path.startswith("/api/"):
            return await self._anonymous(scope, receive, send, security)
        method: str = scope["method"]
        has_body = method in BODY_METHODS
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if has_body and length is not None and length.isdigit() and (
            int(length) > self._max_body_bytes
        ):
            await self._refuse(_too_large(self._max_body_bytes, path), scope, receive, send,
                               security)
            return None
        try:
            key = key_from(headers)
            key_id = await self._authenticator.resolve(key)
        except Exception:  # noqa: BLE001 - the route answers it (503), as it always did
            return receive, []
        if key_id is None:
            response = problem_error_response(self._authenticator.refusal(key), path)
            if has_body:
                response.headers["Connection"] = "close"  # its body is not read: no reuse
            await self._refuse(response, scope, receive, send, security)
            return None
        # The request's own state (uvicorn gives each request a copy): the fast submit
        # path and the routes take the key from here rather than resolve it again.
        scope.setdefault("state", {})[KEY_ID_STATE] = key_id
        policy = self._policies.of(method, path)
        refusal = await self._limiter.check(policy, key_id)
        if refusal is not None:
            # The body, if any, is within the size limit: the server discards it.
            await self._refuse(problem_error_response(refusal.problem(), path), scope,
                               receive, send, security)
            return None
        if has_body and length is None and (
            "chunked" in headers.get("transfer-encoding", "").lower()
        ):
            try:
                body = await read_body(receive, self._max_body_bytes)
            except BodyTooLarge:
                await self._refuse(_too_large(self._max_body_bytes, path), scope, receive,
                                   send, security)
                return None
            if body is None:
                return None
            return replaying(body, receive), policy.header_fields
        return receive, policy.header_fields


    async def _anonymous(self, scope: Scope, receive: Receive, send: Send,
                         security: HeaderFields) -> tuple[Receive, HeaderFields] | None:
        """What needs no key is limited per client address."""
        policy = self._policies.anonymous
        if not policy.items:
            return receive, []
        client = scope.get("client")
        refusal = await self._limiter.check(policy, client[0] if client else "unknown")
        if refusal is not None:
            await self._refuse(problem_error_response(refusal.problem(), scope["path"]),
                               scope, receive, send, security)
            return None
        return receive, policy.header_fields
