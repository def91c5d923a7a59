"""API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import time
import uuid

from fastapi import Request
from starlette.datastructures import Headers, QueryParams

from order_engine.api.problems import ProblemError
from order_engine.store.api_keys import ApiKeyStore, hash_key

CACHE_TTL_S = 30.0
MAX_KEY_LENGTH = 200


def key_from(headers: Headers, query: QueryParams | None = None) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    if query is not None and query.get("apiKey"):
        return query["apiKey"].strip()
    return None


class Authenticator:
    """Resolves keys to their id, with a short in-process cache (keys rarely change)."""

    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store
        self._cache: dict[str, tuple[uuid.UUID, float]] = {}

    async def resolve(self, key: str | None) -> uuid.UUID | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        key_id = await self._store.lookup(key)
        if key_id is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (key_id, now + CACHE_TTL_S)
        return key_id


UNAUTHORIZED = ProblemError(
    401, "Unauthorized",
    "a valid API key is required: `Authorization: Bearer <key>` or `X-API-Key: <key>`",
    type_="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="order-engine"'},
)


async def require_api_key(request: Request) -> uuid.UUID:
    authenticator: Authenticator = request.app.state.authenticator
    key_id = await authenticator.resolve(key_from(request.headers))
    if key_id is None:
        raise UNAUTHORIZED
    return key_id
