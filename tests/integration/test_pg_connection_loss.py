"""The asyncpg pool when PostgreSQL drops a connection, made deterministic by a proxy
(tests/pg_proxy.py) that holds back the server's close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy import text

from order_engine.store.db import (
    DATABASE_ERRORS,
    connection_lost,
    create_engine,
    create_pg_pool,
    to_libpq_url,
)
from tests.pg_proxy import PgProxy

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
