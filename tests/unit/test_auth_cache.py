"""The API-key cache: misses looked up together, one query at a time; entries expire;
unknown keys are remembered briefly; failures are shared."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from order_engine.api import auth
from order_engine.api.auth import Authenticator
from order_engine.store.api_keys import ApiKeyStore, hash_key

KEY_ID = uuid.uuid4()


class SlowStore(ApiKeyStore):
    """Knows one key ("good", revoked once `revoked` is set) and a revoked one ("gone");
    each query waits until `release` is set."""

    def __init__(self) -> None:
        self.lookups = 0
        self.asked: list[int] = []  # how many keys each query asked for
        self.release = asyncio.Event()
        self.fail = False
        self.revoked = False

    async def states_by_hash(self, key_hashes: list[str]) -> dict[str, uuid.UUID | None]:
        self.lookups += 1
        self.asked.append(len(key_hashes))
        revoked = self.revoked  # as the query read it
        await self.release.wait()
        if self.fail:
            raise ConnectionError("database down")
        known: dict[str, uuid.UUID | None] = {
            hash_key("good"): None if revoked else KEY_ID, hash_key("gone"): None}
        return {digest: known[digest] for digest in key_hashes if digest in known}


async def test_concurrent_misses_share_one_lookup() -> None:
    store = SlowStore()
    authenticator = Authenticator(store)
    waiters = [asyncio.create_task(authenticator.resolve("good")) for _ in range(20)]
    await asyncio.sleep(0)
    store.release.set()
    assert await asyncio.gather(*waiters) == [KEY_ID] * 20
    assert store.lookups == 1
    assert await authenticator.resolve("good") == KEY_ID
    assert store.lookups == 1  # cached


async def test_unknown_keys_are_remembered_briefly_and_entries_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = SlowStore()
    store.release.set()
    authenticator = Authenticator(store)
    assert await authenticator.resolve("bad") is None
    assert await authenticator.resolve("bad") is None
    assert store.lookups == 1  # a client retrying a wrong key costs no query
    monkeypatch.setattr(auth, "CACHE_TTL_S", -1.0)  # every entry already expired
    monkeypatch.setattr(auth, "UNKNOWN_TTL_S", -1.0)
    assert await authenticator.resolve("good") == KEY_ID
    assert await authenticator.resolve("good") == KEY_ID
    assert store.lookups == 3  # looked up again once expired: a revoked key stops working


async def test_a_flood_of_random_keys_costs_one_query_at_a_time() -> None:
    """100 requests with random keys at once: not a query (and a pooled connection)
    each, but one query in flight, for all the keys that missed meanwhile."""
    store = SlowStore()
    authenticator = Authenticator(store)
    first = asyncio.create_task(authenticator.resolve("good"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its query is in flight
    flood = [asyncio.create_task(authenticator.resolve(f"random-{i}")) for i in range(100)]
    await asyncio.sleep(0)
    store.release.set()
    assert await first == KEY_ID
    assert await asyncio.gather(*flood) == [None] * 100
    assert store.asked == [1, 100]


async def test_a_failed_lookup_fails_its_waiters_and_the_next_one_retries() -> None:
    store = SlowStore()
    store.fail = True
    authenticator = Authenticator(store)
    waiters = [asyncio.create_task(authenticator.resolve("good")) for _ in range(5)]
    await asyncio.sleep(0)
    store.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    store.fail = False
    assert await authenticator.resolve("good") == KEY_ID
    assert store.lookups == 2


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    store = SlowStore()
    authenticator = Authenticator(store)
    first = asyncio.create_task(authenticator.resolve("good"))
    second = asyncio.create_task(authenticator.resolve("good"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    store.release.set()
    assert await second == KEY_ID
    assert first.cancelled()


async def test_a_revoked_key_is_refused_with_its_reason() -> None:
    store = SlowStore()
    store.release.set()
    authenticator = Authenticator(store)
    assert await authenticator.resolve("gone") is None
    assert await authenticator.resolve("nobody") is None
    assert authenticator.refusal("gone") is auth.REVOKED
    assert authenticator.refusal("nobody") is auth.UNAUTHORIZED
    assert authenticator.refusal(None) is auth.UNAUTHORIZED


async def test_a_forgotten_key_is_looked_up_again_at_once() -> None:
    store = SlowStore()
    store.release.set()
    authenticator = Authenticator(store)
    assert await authenticator.resolve("good") == KEY_ID
    store.revoked = True
    assert await authenticator.resolve("good") == KEY_ID  # cached: CACHE_TTL_S is the bound
    authenticator.forget({KEY_ID})
    assert await authenticator.resolve("good") is None
    assert authenticator.refusal("good") is auth.REVOKED


async def test_a_lookup_in_flight_when_its_key_is_revoked_fills_no_cache() -> None:
    store = SlowStore()
    authenticator = Authenticator(store)
    before = asyncio.create_task(authenticator.resolve("good"))
    await asyncio.sleep(0.01)  # its query has read the key: not revoked yet
    authenticator.forget({KEY_ID})  # nothing cached yet, but the lookup must not count
    store.revoked = True
    after = asyncio.create_task(authenticator.resolve("good"))  # a lookup of its own
    await asyncio.sleep(0.01)
    store.release.set()
    assert await before == KEY_ID  # read before the revocation
    assert await after is None
    assert await authenticator.resolve("good") is None
