"""API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection

from fastapi import Request
from starlette.datastructures import Headers, QueryParams

from order_engine.api.problems import ProblemError
from order_engine.batching import MicroBatcher
from order_engine.keys import MAX_KEY_LENGTH, hash_key
from order_engine.store.api_keys import ApiKeyStore

CACHE_TTL_S = 30.0
# An unknown key is remembered as unknown this long: a client retrying a wrong key costs
# no query. Keys are random and shown once at creation, so none is tried before it exists.
UNKNOWN_TTL_S = 5.0
CACHE_MAX_ENTRIES = 10_000
# Where a request's key id is kept once resolved (its scope["state"], a copy per request).
KEY_ID_STATE = "api_key_id"


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
    """Resolves keys to their id, with a short in-process cache (keys rarely change).

    A revoked key stops working on every API process at once: `order-engine keys revoke`
    publishes the revocation on Redis and each process's event hub hands it to
    `forget()`. A process that was cut off from Redis meanwhile forgets every key when it
    reconnects (`clear()`); and whatever happens to Redis, a cached key is looked up
    again after CACHE_TTL_S: that is the bound.

    Keys not in the cache are looked up together: one query in flight at a time, for
    every key that missed meanwhile (batching.MicroBatcher). A flood of requests with
    random keys (100 at once) each took a query and a pooled connection, and another
    key's p50 went from 5.5 to 608 ms; now it costs one connection, a query per round.
    """

    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store
        self._cache: dict[str, tuple[uuid.UUID | None, float]] = {}
        # Of the keys looked up and refused, those that exist but were revoked (their
        # 401 says so).
        self._revoked: set[str] = set()
        # Bumped by forget() and clear(): a lookup that started before does not fill the
        # cache (it may have read the key before its revocation).
        self._generation = 0
        # One lookup per key at a time: when a busy key's entry expires, every request in
        # flight misses at once; they share the one lookup.
        self._lookups: dict[str, asyncio.Future[uuid.UUID | None]] = {}
        self._batch: MicroBatcher[str, uuid.UUID | None] = MicroBatcher(
            self._lookup_many, key=lambda digest: digest, max_batch=500)

    async def resolve(self, key: str | None) -> uuid.UUID | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda done: self._lookup_done(digest, done))
        # Shielded: one waiter cancelled (its client gone) must not cancel the others'.
        return await asyncio.shield(lookup)

    def _lookup_done(self, digest: str, done: asyncio.Future[uuid.UUID | None]) -> None:
        if self._lookups.get(digest) is done:
            del self._lookups[digest]
        if not done.cancelled():
            done.exception()  # retrieved: its waiters, if any are left, get it too

    async def _lookup(self, digest: str) -> uuid.UUID | None:
        generation = self._generation
        key_id = await self._batch.submit(digest)
        if generation != self._generation:
            return key_id
        if len(self._cache) > CACHE_MAX_ENTRIES:
            self._cache.clear()
            self._revoked.clear()
        ttl = CACHE_TTL_S if key_id is not None else UNKNOWN_TTL_S
        self._cache[digest] = (key_id, time.monotonic() + ttl)
        return key_id

    async def _lookup_many(self, digests: list[str]) -> list[uuid.UUID | Exception | None]:
        found = await self._store.states_by_hash(digests)
        for digest in digests:
            if digest in found and found[digest] is None:
                self._revoked.add(digest)
            else:
                self._revoked.discard(digest)
        return [found.get(digest) for digest in digests]

    def forget(self, key_ids: Collection[uuid.UUID]) -> None:
        """These keys were revoked: drop them from the cache, so that their next request
        looks them up (and is refused)."""
        gone = [digest for digest, (key_id, _) in self._cache.items() if key_id in key_ids]
        for digest in gone:
            del self._cache[digest]
        self._restart_lookups()

    def clear(self) -> None:
        """Look every key up again (revocations may have been missed)."""
        self._cache.clear()
        self._restart_lookups()

    def _restart_lookups(self) -> None:
        # Requests from now on do not join a lookup that may have read the key before it
        # was revoked; they make a new one.
        self._generation += 1
        self._lookups.clear()

    def refusal(self, key: str | None) -> ProblemError:
        """The 401 for a key that `resolve` refused: revoked, or missing or unknown."""
        if key and len(key) <= MAX_KEY_LENGTH and hash_key(key) in self._revoked:
            return REVOKED
        return UNAUTHORIZED


UNAUTHORIZED = ProblemError(
    401, "Unauthorized",
    "a valid API key is required: `Authorization: Bearer <key>` or `X-API-Key: <key>`",
    type_="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="order-engine"'},
)


REVOKED = ProblemError(
    401, "Unauthorized",
    "this API key was revoked: it opens nothing any more (its orders are kept); use "
    "another key", type_="api-key-revoked",
    headers={"WWW-Authenticate": 'Bearer realm="order-engine", error="invalid_token", '
                                 'error_description="the API key was revoked"'},
)


async def require_api_key(request: Request) -> uuid.UUID:
    key_id: uuid.UUID | None = request.scope.get("state", {}).get(KEY_ID_STATE)
    if key_id is not None:  # resolved by the gate (api/gate.py) before the body was read
        return key_id
    authenticator: Authenticator = request.app.state.authenticator
    key = key_from(request.headers)
    key_id = await authenticator.resolve(key)
    if key_id is None:
        raise authenticator.refusal(key)
    return key_id
