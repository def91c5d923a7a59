"""Connections to PostgreSQL: SQLAlchemy's engine for most queries, and a plain asyncpg
pool for the order pipeline's hot path.

The hot path (an order's status changes, the chain's swaps) is a few fixed statements run
thousands of times a second; through SQLAlchemy each one paid for a pre-ping, BEGIN and
COMMIT round trips, statement compilation and ORM loading, which the profile showed as
most of a worker's CPU. asyncpg runs them as cached prepared statements, one round trip
each (a single statement commits on its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from order_engine.config import to_asyncpg_url

log = structlog.get_logger(__name__)
T = TypeVar("T")

STATEMENT_TIMEOUT_MS = 10_000

# The connection itself broke, whatever the statement was: closed under it (class 08,
# e.g. "connection was closed in the middle of operation"), the server shutting it down
# (pg_terminate_backend: 57P01), or asyncpg's protocol out of step with it. The last is
# what a connection terminated while idle gives, for a moment: the server's FATAL error
# arrives with no statement running, which asyncpg reads into its error-consuming state
# (coreproto: PROTOCOL_ERROR_CONSUME, 2), and only its close, read a turn of the event
# loop or more later, marks the connection closed. A statement started in between fails
# with InternalClientError ("cannot switch to state 12; another operation (2) is in
# progress") before anything is sent, and asyncpg aborts the connection
# (Protocol._coreproto_error), so the pool connects afresh for the next one; SQLAlchemy
# then sees it closed and invalidates it (its pre-ping reconnects).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError,
    asyncpg.IdleSessionTimeoutError, asyncpg.InternalClientError,
)
# PostgreSQL unreachable, a connection dropped, a statement timed out, no pooled
# connection free in time: through either driver path.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError, PoolTimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
    *CONNECTION_ERRORS,
)
# Refused because of a row's values (bad data, a constraint), not because PostgreSQL is
# unavailable: a batch that fails so is retried item by item, to find the culprit.
ROW_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
)


def _caused_by(exc: BaseException | None, kinds: tuple[type[Exception], ...]) -> bool:
    """Whether `exc`, or an exception it was raised from, is one of `kinds`."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kinds):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the statement's connection broke (through either driver path):
    then the statement may have run or not, and another connection may succeed."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return _caused_by(exc, CONNECTION_ERRORS)  # SQLAlchemy's error is raised from asyncpg's


# Between attempts of an operation whose connection broke. Dropped connections are
# noticed by the pools, and replaced, within a turn or two of the event loop; the
# delays give a PostgreSQL that is restarting a moment. The last one, a second, was added
# with the exposure counter (store/exposure.py): a keyed submission's transaction waits on
# its key's row, and connections dropped every 0.3 s (test_pg_drops) could break all of
# its first four tries.
RETRY_DELAYS_S = (0.0, 0.05, 0.25, 1.0)


async def retry_on_connection_loss(operation: Callable[[int], Awaitable[T]], what: str) -> T:
    """`operation(attempt)`, run again (attempt 1, 2, ...) each time it fails because its
    connection broke, up to len(RETRY_DELAYS_S) more times; any other failure is raised.

    A connection that breaks may have done so before the statement reached PostgreSQL, or
    after it committed and before the answer came back: only an operation that is safe to
    run twice may be retried so (a read; a write that recognizes its own earlier commit,
    which `attempt` > 0 tells it to look for).
    """
    attempt = 0
    while True:
        try:
            return await operation(attempt)
        except Exception as exc:
            if attempt >= len(RETRY_DELAYS_S) or not connection_lost(exc):
                raise
            log.info("database connection lost; retrying", operation=what,
                     attempt=attempt + 1, error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(RETRY_DELAYS_S[attempt])
        attempt += 1


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(database_url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        to_asyncpg_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": 10,
            "command_timeout": 30,
            "server_settings": {
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "application_name": "order-engine",
            },
        },
    )


def to_libpq_url(url: str) -> str:
    """The URL as asyncpg takes it (no SQLAlchemy dialect in the scheme)."""
    return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=_json_dumps,
                                  decoder=orjson.loads, format="text")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Nothing to reset: the hot path sets no session state and leaves no transaction open
    (asyncpg's default reset would cost a round trip on every release). A connection that
    broke is not handed out again all the same: asyncpg marks it closed (see
    CONNECTION_ERRORS), and the pool terminates a closed connection on release."""


async def create_pg_pool(database_url: str, size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        to_libpq_url(database_url),
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_no_reset,
        timeout=10,
        command_timeout=30,
        server_settings={"statement_timeout": str(STATEMENT_TIMEOUT_MS),
                         "application_name": "order-engine"},
    )
    assert pool is not None
    return pool


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def pg_array_type(column: ColumnElement[Any]) -> str:
    """The PostgreSQL type of an array of the column's values (for `unnest($n::T[])`)."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it bare
    return f"{column.type.compile(dialect=dialect)}[]"


def json_texts(values: list[Any]) -> list[str | None]:
    """Values for a `$n::text[]` parameter cast to jsonb element by element in SQL. Not
    a jsonb[] parameter: asyncpg takes a list inside an array for a nested dimension."""
    return [None if value is None else _json_dumps(value) for value in values]
