"""Request bodies parsed as JSON that names each field once.

Python's json (and so Starlette's `Request.json`) keeps the last of repeated keys:
`{"amount": "1", "amount": "0.002"}` made a 0.002 order, though a reader of the body (a
log line, a proxy, a signature check) may well have seen 1. A repeated field is refused
instead, as malformed JSON (422), on the fast submit path and on every route.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

DUPLICATE_FIELD = "duplicate field"


class _Duplicate(ValueError):
    pass


def _one_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise _Duplicate(name)
        obj[name] = value
    return obj


def loads(body: bytes | str) -> Any:
    """json.loads, refusing an object that names a field twice (JSONDecodeError)."""
    try:
        return json.loads(body, object_pairs_hook=_one_each)
    except _Duplicate as dup:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        raise json.JSONDecodeError(f"{DUPLICATE_FIELD} {dup.args[0]!r}", text, 0) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose request body is parsed by `loads` (FastAPI answers its
    JSONDecodeError as a 422 like any malformed body)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
