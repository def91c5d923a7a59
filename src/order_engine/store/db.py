"""Connections to PostgreSQL: SQLAlchemy's engine for most queries, and a plain asyncpg
pool for the order pipeline's hot path.

The hot path (an order's status changes, the chain's swaps) is a few fixed statements run
thousands of times a second; through SQLAlchemy each one paid for a pre-ping, BEGIN and
COMMIT round trips, statement compilation and ORM loading, which the profile showed as
most of a worker's CPU. asyncpg runs them as cached prepared statements, one round trip
each (a single statement commits on its own).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy import ColumnElement
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from order_engine.config import to_asyncpg_url

STATEMENT_TIMEOUT_MS = 10_000

# PostgreSQL unreachable, a connection dropped, a statement timed out, no pooled
# connection free in time: through either driver path.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError, PoolTimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
)
# Refused because of a row's values (bad data, a constraint), not because PostgreSQL is
# unavailable: a batch that fails so is retried item by item, to find the culprit.
ROW_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
)


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
    (asyncpg's default reset would cost a round trip on every release)."""


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
