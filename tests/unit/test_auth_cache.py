"""The API-key cache: one lookup per key at a time, entries expire, failures are shared."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from order_engine.api import auth
from order_engine.api.auth import Authenticator
from order_engine.store.api_keys import ApiKeyStore

KEY_ID = uuid.uuid4()


class SlowStore(ApiKeyStore):
    """Knows one key ("good"); each lookup waits until `release` is set."""

    def __init__(self) -> None:
        self.lookups = 0
        self.release = asyncio.Event()
        self.fail = False

    async def lookup(self, key: str) -> uuid.UUID | None:
        self.lookups += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("database down")
        return KEY_ID if key == "good" else None


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


async def test_unknown_keys_are_not_cached_and_entries_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = SlowStore()
    store.release.set()
    authenticator = Authenticator(store)
    assert await authenticator.resolve("bad") is None
    assert await authenticator.resolve("bad") is None
    assert store.lookups == 2
    monkeypatch.setattr(auth, "CACHE_TTL_S", -1.0)  # every entry already expired
    assert await authenticator.resolve("good") == KEY_ID
    assert await authenticator.resolve("good") == KEY_ID
    assert store.lookups == 4  # so a revoked key stops working


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
