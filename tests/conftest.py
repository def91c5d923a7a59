"""Fixtures: a database and a Redis key space of this run's own, and running stacks.

Every run creates its own PostgreSQL database (dropped at the end) and uses its own Redis
key prefix, so runs never collide, and talks to real servers, never mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from order_engine.config import Settings
from order_engine.migrate import seed_chain, upgrade_database
from tests.servers import (
    server_database_url,
    server_redis_url,
    stop_embedded,
    unique_name,
    with_database,
)
from tests.stack import API_KEY, Stack, running_stack


def _asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def fresh_database(revision: str = "head") -> AsyncIterator[str]:
    """A database of its own, migrated (to `revision`; at head, with the genesis market);
    dropped at the end."""
    admin_url = _asyncpg_url(server_database_url())
    name = unique_name("oe_test")
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_url, name)
    try:
        await asyncio.to_thread(upgrade_database, url, revision)
        if revision == "head":
            await seed_chain(Settings(_env_file=None, database_url=url))
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url
    stop_embedded()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return server_redis_url()


@pytest.fixture(scope="session")
async def make_settings(
    database_url: str, redis_url: str
) -> AsyncIterator[Callable[..., Settings]]:
    """Settings for a stack of its own: a fresh Redis prefix (so its own queue and events)."""
    prefixes: list[str] = []

    def make(**overrides: Any) -> Settings:
        prefix = unique_name("oe-test")
        prefixes.append(prefix)
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "bootstrap_api_key": API_KEY,
            "sim_latency_scale": 0.0,
            "sim_failure_rate": 0.0,
            "retry_base_ms": 20,
            "retry_max_ms": 100,
            "worker_concurrency": 20,
            "log_level": "WARNING",
            # Tests submit and poll far faster than a client's limits allow; the limits
            # have tests of their own (tests/integration/test_rate_limits.py).
            "rate_limit_orders": "",
            "rate_limit_quotes": "",
            "rate_limit_reads": "",
            "rate_limit_anonymous": "",
            "max_websockets_per_key": 100_000,
            "max_firehoses_per_key": 100_000,
            # Refusals are answered at once in tests but those of the delay's own.
            "refusal_delay_s": 0.0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    yield make
    redis = Redis.from_url(redis_url)
    try:
        for prefix in prefixes:
            async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
                await redis.delete(key)
    finally:
        await redis.aclose()


@pytest.fixture(scope="session")
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    """The shared stack: API and one in-process worker, simulated latency off."""
    async with running_stack(make_settings()) as running:
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Any]:
    async with stack.client() as http:
        yield http


@pytest.fixture
async def other_key(stack: Stack) -> str:
    key, _ = await stack.services.api_keys.create("other")
    return key


