"""HTTP routes: orders, tokens, quotes, health."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import text
from starlette.datastructures import Headers, State
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from order_engine import metrics
from order_engine.api.auth import KEY_ID_STATE, Authenticator, key_from, require_api_key
from order_engine.api.gate import read_body, replaying
from order_engine.api.json_body import StrictJSONRoute, loads
from order_engine.api.problems import ProblemError, error_response, validation_problem
from order_engine.api.responses import JSONResponse
from order_engine.api.schemas import (
    DEFAULT_SLIPPAGE_BPS,
    MAX_SLIPPAGE_BPS,
    OrderValidationError,
    SubmitOrderRequest,
    ValidOrder,
    order_to_json,
    price_impact_limit,
    validate_order,
    validate_trade,
)
from order_engine.api.security import API_HEADERS
from order_engine.domain.amounts import format_amount
from order_engine.domain.errors import ExecutionError
from order_engine.domain.impact import impact_over_limit
from order_engine.domain.orders import OrderStatus, min_amount_out
from order_engine.domain.routing import route_legs, route_summary, venue_quotes
from order_engine.domain.tokens import TOKENS
from order_engine.quoting import quote_route
from order_engine.services import Services
from order_engine.store.exposure import ExposureLimitError
from order_engine.store.repository import (
    IdempotencyClaim,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidCursorError,
    NewOrder,
    OrderNotFoundError,
)
from order_engine.store.submissions import SubmissionBatcher

log = structlog.get_logger(__name__)

router = APIRouter(route_class=StrictJSONRoute)
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def request_fingerprint(new: NewOrder) -> str:
    """What makes two submissions "the same body": the order they would create."""
    canonical = orjson.dumps([new.type.value, new.input_mint, new.output_mint,
                              str(new.amount_in), new.slippage_bps,
                              new.max_price_impact_bps])
    return hashlib.sha256(canonical).hexdigest()
ApiKeyId = Annotated[uuid.UUID, Depends(require_api_key)]


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _not_found(order_id: str) -> ProblemError:
    return ProblemError(404, "Not found", f"order {order_id} not found", type_="not-found")


def _parse_order_id(order_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(order_id)
    except ValueError:
        raise _not_found(order_id) from None


@router.post("/api/orders", status_code=201, tags=["orders"])
@router.post("/api/orders/execute", status_code=201, tags=["orders"],
             summary="Submit order (alias)")
async def submit_order(
    body: SubmitOrderRequest,
    request: Request,
    api_key_id: ApiKeyId,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Same key + same body within 24 h "
               "returns the first answer again and creates nothing."),
    ] = None,
) -> JSONResponse:
    services = services_of(request)
    errors: list[dict[str, str]] = []
    valid = None
    try:
        valid = validate_order(body, services.settings)
    except OrderValidationError as exc:
        errors += exc.errors
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        errors.append({"field": "Idempotency-Key",
                       "message": "must be 1 to 255 visible ASCII characters"})
    if errors or valid is None:
        raise validation_problem(errors)
    if idempotency_key is None:
        return await _submit_batched(request.app.state, api_key_id, valid)
    new = _new_order(api_key_id, valid)
    claim = IdempotencyClaim(idempotency_key, request_fingerprint(new))
    try:
        created = await services.orders.create_idempotent(new, claim)
    except ExposureLimitError as exc:
        raise exposure_problem(exc) from None
    except IdempotencyInFlightError:
        raise ProblemError(
            409, "Request in flight",
            "a request with this Idempotency-Key is still being handled; retry shortly",
            type_="idempotency-in-flight", headers={"Retry-After": "1"},
        ) from None
    except IdempotencyMismatchError:
        raise ProblemError(
            422, "Idempotency key reused",
            "this Idempotency-Key was used with a different request body",
            type_="idempotency-key-reused",
            errors=[{"field": "Idempotency-Key",
                     "message": "already used with a different request"}],
        ) from None
    order_id = str(created.order.id)
    if not created.replayed:
        metrics.ORDERS_SUBMITTED.inc()
    # The order is committed: from here it is never lost. If the enqueue fails (Redis
    # down), the worker's sweep finds the pending order and enqueues it. A replay of a
    # still-pending order enqueues again, which does nothing if its job exists.
    if created.order.status == OrderStatus.PENDING.value:
        try:
            await asyncio.wait_for(services.enqueue_order(order_id), 5)
        except Exception as exc:  # noqa: BLE001 (any enqueue failure is recoverable)
            log.warning("enqueue failed; the sweep will pick the order up",
                        order_id=order_id, error=str(exc))
    if created.event is not None:
        await services.publisher.publish(created.event)
    return _accepted(order_id, replayed=created.replayed)


def exposure_problem(exc: ExposureLimitError) -> ProblemError:
    """409: the request is valid, but the key's orders in flight leave no room for it;
    the same request succeeds once some of them finish (not a rate: no Retry-After)."""
    return ProblemError(409, "Exposure limit reached", str(exc), type_="exposure-limit",
                        errors=[{"field": "amount", "message": (
                            f"open {exc.open_amount} {exc.symbol} + {exc.amount} > "
                            f"limit {exc.limit} {exc.symbol} (MAX_KEY_EXPOSURE)")}])


def _new_order(api_key_id: uuid.UUID, valid: ValidOrder) -> NewOrder:
    return NewOrder(
        api_key_id=api_key_id,
        type=valid.type,
        input_mint=valid.input_token.mint,
        output_mint=valid.output_token.mint,
        amount_in=valid.amount_in,
        slippage_bps=valid.slippage_bps,
        max_price_impact_bps=valid.max_price_impact_bps,
    )


async def _submit_batched(state: State, api_key_id: uuid.UUID, valid: ValidOrder) -> (
    JSONResponse
):
    """A submission without an Idempotency-Key: group commit with whatever else is being
    submitted right now (store/submissions.py)."""
    batcher: SubmissionBatcher = state.batcher
    try:
        accepted = await batcher.submit(_new_order(api_key_id, valid))
    except ExposureLimitError as exc:
        raise exposure_problem(exc) from None
    metrics.ORDERS_SUBMITTED.inc()
    return _accepted(str(accepted.order_id), replayed=False)


# --- the fast path of POST /api/orders ---------------------------------------------------
#
# Under load nearly every request is a plain, valid submission, and the profile showed
# FastAPI's share of one (its middleware stack, routing, dependency solving, body reading)
# at about half of the API's CPU. The application (app.py) hands these requests here
# before FastAPI sees them. This path answers only what it is sure of: a valid order
# without an Idempotency-Key, from a known key, with a small JSON body. Anything else, or
# any doubt (bad JSON, a validation error, an unknown key), goes on to the FastAPI route
# above with the body replayed, so every error answer is the route's own. The checks are
# the route's too: the same pydantic model (still what the OpenAPI docs show) and
# validate_order.

SUBMIT_PATHS = frozenset({"/api/orders", "/api/orders/execute"})
# A valid order is ~150 bytes; bigger (or chunked) bodies take the general route.
FAST_BODY_LIMIT = 4096


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


async def submit_fast(state: State, scope: Scope, receive: Receive, send: Send) -> (
    Receive | None
):
    """Answer a plain submission (POST to one of SUBMIT_PATHS); None when answered, else
    the receive to hand the request to FastAPI with (the body put back if it was read)."""
    headers = Headers(scope=scope)
    authenticator: Authenticator | None = getattr(state, "authenticator", None)
    length = headers.get("content-length", "")
    if (
        authenticator is None
        or "idempotency-key" in headers
        or not _is_json(headers.get("content-type", ""))
        or not length.isdigit()
        or int(length) > FAST_BODY_LIMIT
    ):
        return receive
    api_key_id = scope.get("state", {}).get(KEY_ID_STATE)  # resolved by the gate
    if api_key_id is None:
        try:
            api_key_id = await authenticator.resolve(key_from(headers))
        except Exception:  # noqa: BLE001 (the route answers it, as it always did)
            return receive
    if api_key_id is None:
        return receive
    body = await read_body(receive)
    if body is None:
        return None
    services: Services = state.services
    try:
        # json, as the route (Starlette) parses: orjson reads an integer past 64 bits as a
        # float, which would change the amount; the difference is ~2 us a request.
        valid = validate_order(SubmitOrderRequest.model_validate(loads(body)),
                               services.settings)
    except Exception:  # noqa: BLE001 (any doubt: the route answers, as it always did)
        return replaying(body, receive)
    response: Response
    try:
        response = await _submit_batched(state, api_key_id, valid)
    except Exception as exc:  # noqa: BLE001 (answered as the route's handlers would)
        response = error_response(exc, Request(scope).url.path)
    # The security headers every answer carries, added here rather than by wrapping
    # `send` as for other requests (app.py): a tenth of the cost on the hottest path.
    response.raw_headers.extend(API_HEADERS)
    await response(scope, receive, send)
    return None


def _accepted(order_id: str, *, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/api/orders/{order_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(
        {"orderId": order_id, "status": "pending", "message": "Order queued successfully"},
        status_code=201,
        headers=headers,
    )


@router.get("/api/orders/{order_id}", tags=["orders"])
async def get_order(order_id: str, request: Request, api_key_id: ApiKeyId) -> JSONResponse:
    oid = _parse_order_id(order_id)
    try:
        order = await services_of(request).orders.get(oid, api_key_id)
    except OrderNotFoundError:
        raise _not_found(order_id) from None
    return JSONResponse(order_to_json(order))


@router.get("/api/orders/{order_id}/events", tags=["orders"])
async def get_order_events(
    order_id: str, request: Request, api_key_id: ApiKeyId
) -> JSONResponse:
    oid = _parse_order_id(order_id)
    services = services_of(request)
    try:
        await services.orders.get(oid, api_key_id)
    except OrderNotFoundError:
        raise _not_found(order_id) from None
    events = await services.orders.events(oid)
    return JSONResponse({"events": [e.to_message() for e in events]})


@router.get("/api/orders", tags=["orders"])
async def list_orders(
    request: Request,
    api_key_id: ApiKeyId,
    status: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    wanted: OrderStatus | None = None
    if status:
        try:
            wanted = OrderStatus(status)
        except ValueError:
            raise validation_problem([{
                "field": "status",
                "message": f"unknown status; one of: {', '.join(s.value for s in OrderStatus)}",
            }]) from None
    try:
        orders, next_cursor = await services_of(request).orders.list_page(
            api_key_id, wanted, limit, cursor
        )
    except InvalidCursorError as exc:
        raise validation_problem([{"field": "cursor", "message": str(exc)}]) from None
    return JSONResponse(
        {"orders": [order_to_json(o) for o in orders], "nextCursor": next_cursor}
    )


@router.get("/api/tokens", tags=["market"])
async def list_tokens(api_key_id: ApiKeyId) -> JSONResponse:
    return JSONResponse({"tokens": [t.to_json() for t in TOKENS]})


@router.get("/api/quote", tags=["market"])
async def get_quote(
    request: Request,
    api_key_id: ApiKeyId,
    inputToken: Annotated[str, Query(max_length=64)],
    outputToken: Annotated[str, Query(max_length=64)],
    amount: Annotated[str, Query(max_length=64)],
    slippageBps: Annotated[
        int, Query(ge=1, le=MAX_SLIPPAGE_BPS)
    ] = DEFAULT_SLIPPAGE_BPS,
    maxPriceImpactBps: Annotated[
        int | None, Query(description="The limit to judge the route against, as an order's"
                          " maxPriceImpactBps (default MAX_PRICE_IMPACT_BPS)")
    ] = None,
) -> JSONResponse:
    services = services_of(request)
    errors: list[dict[str, str]] = []
    try:
        token_in, token_out, _, units = validate_trade(
            inputToken, outputToken, amount, services.settings.max_order_amount
        )
    except OrderValidationError as exc:
        errors += exc.errors
    try:
        limit = price_impact_limit(maxPriceImpactBps, services.settings)
    except OrderValidationError as exc:
        errors += exc.errors
    if errors:
        raise validation_problem(errors)
    try:
        plan = await quote_route(services.venues, token_in.mint, token_out.mint, units,
                                 services.settings.quote_timeout_s)
    except ExecutionError as exc:
        status = 503 if exc.transient else 422
        raise ProblemError(status, "No quote", exc.message, type_=exc.code) from None
    summary = route_summary(plan)
    body: dict[str, Any] = {
        "inputToken": token_in.symbol,
        "outputToken": token_out.symbol,
        "amount": format_amount(units, token_in),
        "slippageBps": slippageBps,
        "quotes": venue_quotes(plan, list(plan.paths)),
        "route": route_legs(plan),
        **summary,
        # What an order with this limit would meet: over it, it fails before sending.
        "maxPriceImpactBps": limit,
        "priceImpactOverLimit": impact_over_limit(Decimal(summary["priceImpactPct"]), limit),
        "expectedAmountOut": format_amount(plan.amount_out, token_out),
        "minAmountOut": format_amount(min_amount_out(plan.amount_out, slippageBps), token_out),
    }
    return JSONResponse(body)


@router.get("/healthz", tags=["health"])
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    services = services_of(request)

    async def postgres() -> None:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await services.redis.ping()

    checks: dict[str, str] = {}
    for name, check in (("postgres", postgres), ("redis", redis)):
        try:
            await asyncio.wait_for(check(), 2)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 (any failure means not ready)
            checks[name] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                          status_code=200 if ready else 503)
