"""What a failure of PostgreSQL is answered with: an outage is a 503 to retry; a statement
PostgreSQL refuses as written is a bug, a 500, never an invitation to retry forever."""

from __future__ import annotations

import asyncpg
import orjson
from sqlalchemy.exc import DBAPIError, ProgrammingError

from order_engine.api.problems import error_response


def _answer(exc: Exception) -> tuple[int, str | None, str]:
    response = error_response(exc, "/api/orders")
    return (response.status_code, response.headers.get("retry-after"),
            orjson.loads(bytes(response.body))["type"].rsplit("/", 1)[-1])


def test_an_outage_is_503_with_retry_after() -> None:
    lost = DBAPIError("INSERT ...", {}, asyncpg.ConnectionDoesNotExistError("closed"))
    assert _answer(lost) == (503, "1", "unavailable")
    assert _answer(asyncpg.CannotConnectNowError("starting up")) == (503, "1", "unavailable")


def test_a_statement_postgres_refuses_is_a_500_not_to_be_retried() -> None:
    undefined = asyncpg.UndefinedColumnError('column "x" does not exist')
    assert _answer(ProgrammingError("SELECT x", {}, undefined)) == (
        500, None, "internal-error")
    assert _answer(undefined) == (500, None, "internal-error")
    assert _answer(asyncpg.InsufficientPrivilegeError("denied")) == (
        500, None, "internal-error")
