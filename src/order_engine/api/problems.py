"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from order_engine.api.json_body import DUPLICATE_FIELD
from order_engine.store.db import DATABASE_ERRORS

log = structlog.get_logger(__name__)

PROBLEM_TYPE_BASE = "https://order-engine.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# A body of a million unknown fields made a 55 MB answer: list this many, count the rest.
MAX_LISTED_ERRORS = 50


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE,
                    headers=headers)


def validation_problem(errors: list[dict[str, str]]) -> ProblemError:
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return ProblemError(422, "Validation failed", f"invalid request: {fields}",
                        type_="validation-error", errors=errors)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else "body"


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        reason = str((error.get("ctx") or {}).get("error", ""))
        if reason.startswith(DUPLICATE_FIELD):
            return f"body is not valid JSON here: {reason}"
        return "body is not valid JSON"
    return str(error.get("msg", "invalid value"))


# Errors that mean a backing service is unavailable: 503, retry.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    *DATABASE_ERRORS, RedisError, ConnectionError, TimeoutError,
)


def problem_error_response(exc: ProblemError, path: str) -> Response:
    return problem_response(exc.status, exc.title, exc.detail, type_=exc.type,
                            errors=exc.errors, headers=exc.headers, instance=path)


# A statement PostgreSQL refuses as written (a syntax error, an undefined column, a missing
# privilege): a bug or a database not migrated, not an outage. A 503 with Retry-After
# would have clients retry it forever; it is a 500, logged with its traceback.
_STATEMENT_ERRORS: tuple[type[Exception], ...] = (ProgrammingError,
                                                  asyncpg.SyntaxOrAccessError)


def unavailable_response(exc: Exception, path: str) -> Response:
    if isinstance(exc, _STATEMENT_ERRORS):
        return unexpected_response(path)
    log.warning("dependency unavailable", path=path, error=f"{type(exc).__name__}: {exc}")
    return problem_response(503, "Service unavailable", "a backing service (PostgreSQL "
                            "or Redis) did not answer; retry shortly (with the same "
                            "Idempotency-Key, if you sent one)", type_="unavailable",
                            headers={"Retry-After": "1"}, instance=path)


def unexpected_response(path: str) -> Response:
    log.exception("unhandled error", path=path)
    return problem_response(500, "Internal error", "the server failed to handle this "
                            "request; it has been logged", type_="internal-error",
                            instance=path)


def error_response(exc: Exception, path: str) -> Response:
    """What the handlers below answer for `exc`, for code that runs outside FastAPI's
    exception handling (the fast submit path in routes.py)."""
    if isinstance(exc, ProblemError):
        return problem_error_response(exc, path)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return unavailable_response(exc, path)
    return unexpected_response(path)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return problem_error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        found = exc.errors()
        errors = [
            {"field": _field_name(tuple(e.get("loc", ()))), "message": _message(e)}
            for e in found[:MAX_LISTED_ERRORS]
        ]
        if len(found) > MAX_LISTED_ERRORS:
            errors.append({"field": "body", "message": f"{len(found) - MAX_LISTED_ERRORS} "
                           "more errors not listed"})
        problem = validation_problem(errors)
        return problem_response(problem.status, problem.title, problem.detail,
                                type_=problem.type, errors=errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        title = titles.get(exc.status_code, "HTTP error")
        return problem_response(exc.status_code, title, str(exc.detail),
                                type_=title.lower().replace(" ", "-"),
                                headers=getattr(exc, "headers", None),
                                instance=request.url.path)

    async def _unavailable(request: Request, exc: Exception) -> Response:
        return unavailable_response(exc, request.url.path)

    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_response(request.url.path)
