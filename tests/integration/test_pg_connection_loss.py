"""The pools and the submissions' group commit when PostgreSQL drops a connection, made
deterministic by a proxy (tests/pg_proxy.py) that holds back a server's close, or cuts
a connection before a reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from arq.constants import job_key_prefix
from sqlalchemy import text

from order_engine.domain.orders import OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.store.db import (
    DATABASE_ERRORS,
    connection_lost,
    create_engine,
    create_pg_pool,
    session_factory,
    to_libpq_url,
)
from order_engine.store.repository import IdempotencyClaim, NewOrder, OrderRepository
from order_engine.store.submissions import SubmissionBatcher
from tests.pg_proxy import PgProxy
from tests.servers import unique_name
from tests.stack import API_KEY, Stack

HELD_EOF_S = 3.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PgProxy]:
    parts = urlsplit(to_libpq_url(database_url))
    async with PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432).running() as p:
        yield p


def _through(database_url: str, proxy: PgProxy) -> str:
    parts = urlsplit(to_libpq_url(database_url))
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))


async def _terminate(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect(to_libpq_url(database_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def _drop_idle_connection(pool: asyncpg.Pool, database_url: str,
                                proxy: PgProxy) -> None:
    """Terminate the pool's (only) connection while idle; the client gets the server's
    FATAL error, and hears of the close only HELD_EOF_S later."""
    pid = await pool.fetchval("SELECT pg_backend_pid()")
    proxy.eof_delay_s = HELD_EOF_S
    await _terminate(database_url, pid)
    await proxy.server_closed.wait()
    await asyncio.sleep(0.1)  # the FATAL error is read


async def test_a_terminated_connection_fails_one_statement_as_infrastructure(
    database_url: str, proxy: PgProxy
) -> None:
    pool = await create_pg_pool(_through(database_url, proxy), size=1)
    try:
        await _drop_idle_connection(pool, database_url, proxy)
        started = asyncio.get_running_loop().time()
        # The first statement on it fails (asyncpg: "cannot switch to state 12; another
        # operation (2) is in progress", the error that failed orders as a bug): an
        # infrastructure error.
        with pytest.raises(DATABASE_ERRORS) as failed:
            await pool.fetchval("SELECT 1")
        assert connection_lost(failed.value)
        # asyncpg aborted that connection (with `_no_reset` too): the next statement,
        # still before the client hears of the close, gets a new one.
        assert await pool.fetchval("SELECT 1") == 1
        assert asyncio.get_running_loop().time() - started < HELD_EOF_S
    finally:
        await pool.close()


async def test_sqlalchemys_pre_ping_replaces_a_terminated_connection(
    database_url: str, proxy: PgProxy
) -> None:
    engine = create_engine(_through(database_url, proxy), pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        proxy.eof_delay_s = HELD_EOF_S
        await _terminate(database_url, pid)
        await proxy.server_closed.wait()
        await asyncio.sleep(0.1)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()


@pytest.fixture
async def batcher(stack: Stack, database_url: str, proxy: PgProxy) -> AsyncIterator[
    SubmissionBatcher
]:
    pool = await create_pg_pool(_through(database_url, proxy), size=1)
    prefix = unique_name("oe-test")
    batcher = SubmissionBatcher(pool, stack.services.redis, prefix, f"{prefix}:queue",
                                "execute_order", stack.settings.max_key_exposure)
    batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()
        await pool.close()
        async for key in stack.services.redis.scan_iter(match=f"{prefix}:*"):
            await stack.services.redis.delete(key)


async def _new_order(stack: Stack) -> NewOrder:
    key_id = await stack.services.api_keys.lookup(API_KEY)
    assert key_id is not None
    return NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 1_000_000, 50)


async def _stored(stack: Stack, order_id: uuid.UUID) -> tuple[int, int]:
    """How many rows of the order, and of its first event, are stored."""
    row = await stack.services.pg.fetchrow(
        "SELECT (SELECT count(*) FROM orders WHERE id = $1) AS orders, "
        "(SELECT count(*) FROM order_events WHERE order_id = $1 AND seq = 1) AS events",
        order_id)
    assert row is not None
    await stack.services.redis.delete(job_key_prefix + str(order_id))
    return int(row["orders"]), int(row["events"])


async def test_a_submission_on_a_dropped_connection_is_committed_on_another(
    stack: Stack, database_url: str, proxy: PgProxy, batcher: SubmissionBatcher
) -> None:
    await batcher.submit(await _new_order(stack))  # the pool's connection is up
    await _drop_idle_connection(batcher._pg, database_url, proxy)
    accepted = await batcher.submit(await _new_order(stack))
    assert await _stored(stack, accepted.order_id) == (1, 1)


async def test_a_submission_whose_commit_was_not_heard_is_stored_once(
    stack: Stack, proxy: PgProxy, batcher: SubmissionBatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's INSERT committed, then the connection broke before its reply came:
    the retry (same order ids) must find it committed, not store a second order."""
    found: list[set[uuid.UUID]] = []
    stored = batcher._stored

    async def spy(ids: list[uuid.UUID], now: datetime) -> set[uuid.UUID]:
        found.append(await stored(ids, now))
        return found[-1]

    monkeypatch.setattr(batcher, "_stored", spy)
    await batcher.submit(await _new_order(stack))  # prepared: the next reply is the INSERT's
    proxy.cut_on = b"SELECT 1"  # the CommandComplete tag of the batch's statement
    accepted = await batcher.submit(await _new_order(stack))
    assert proxy.cut.is_set()
    # The retry was refused by the primary key, and found it stored.
    assert found == [{accepted.order_id}]
    assert await _stored(stack, accepted.order_id) == (1, 1)


@pytest.mark.parametrize("with_key", [True, False])
async def test_a_claimed_submission_whose_commit_was_not_heard_is_stored_once(
    stack: Stack, database_url: str, proxy: PgProxy, with_key: bool
) -> None:
    """The route's path (SQLAlchemy, one transaction): the COMMIT went through, its reply
    was cut. The retry finds the order its first try stored (by the key, or by its id)
    and answers as that try would have: not a replay, nothing stored twice."""
    engine = create_engine(_through(database_url, proxy), pool_size=1)
    repo = OrderRepository(session_factory(engine), stack.services.pg)
    try:
        await repo.create(await _new_order(stack))  # connected: the next COMMIT is ours
        claim = IdempotencyClaim(f"cut-{uuid.uuid4()}", "hash") if with_key else None
        proxy.cut_on = b"COMMIT"  # the CommandComplete tag of the transaction's COMMIT
        created = await repo.create_idempotent(await _new_order(stack), claim)
    finally:
        await engine.dispose()
    assert proxy.cut.is_set()
    assert not created.replayed
    assert created.event is not None
    assert created.event.seq == 1
    assert await _stored(stack, created.order.id) == (1, 1)
    if claim is not None:
        assert await stack.services.pg.fetchval(
            "SELECT order_id FROM idempotency_keys WHERE key = $1", claim.key
        ) == created.order.id
