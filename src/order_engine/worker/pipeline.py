"""Executing one order: routing -> building -> submitted -> confirmed.

Every step starts from what PostgreSQL says the order is, so the pipeline can be run again
at any point (arq may run a job twice, or after a crash) and converges: a status move is a
compare-and-set, the signed transaction is stored before it is sent, and a re-run asks the
chain about that signature before it builds anything new.
"""

from __future__ import annotations

import asyncio
import enum
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from solders.keypair import Keypair

from order_engine import metrics
from order_engine.domain.amounts import execution_price, format_amount
from order_engine.domain.errors import (
    BlockhashExpiredError,
    ExecutionError,
    InsufficientLiquidityError,
    PermanentError,
    PriceImpactTooHighError,
    SlippageExceededError,
    TransientError,
)
from order_engine.domain.impact import impact_over_limit, impact_reason
from order_engine.domain.orders import OrderStatus, min_amount_out, retry_delay_ms
from order_engine.domain.routing import route_legs, route_summary, venue_quotes
from order_engine.domain.tokens import token_by_mint
from order_engine.events import EventPublisher
from order_engine.market.chain import SLIPPAGE_ERROR, SignatureStatus, SimulatedChain
from order_engine.market.programs import memo_instruction
from order_engine.market.transactions import SignedTransaction, sign_transaction
from order_engine.market.venues import SimulatedVenue
from order_engine.quoting import execution_steps, quote_route, route_instruction
from order_engine.store.models import Order
from order_engine.store.repository import OrderRepository, StaleStatusError

log = structlog.get_logger(__name__)

S = OrderStatus


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_ms: int = 500
    max_ms: int = 10_000


class RetryLater(Exception):
    """The order is `retrying`: run the job again after `delay_ms`."""

    def __init__(self, delay_ms: int) -> None:
        super().__init__(f"retry in {delay_ms} ms")
        self.delay_ms = delay_ms


class OrderExecutor:
    def __init__(
        self,
        repo: OrderRepository,
        chain: SimulatedChain,
        venues: list[SimulatedVenue],
        publisher: EventPublisher,
        wallet: Keypair,
        retry: RetryPolicy,
        quote_timeout_s: float,
        rng: random.Random | None = None,
        max_price_impact_bps: int = 500,
    ) -> None:
        self._repo = repo
        self._chain = chain
        self._venues = {v.venue: v for v in venues}
        self._publisher = publisher
        self._wallet = wallet
        self._retry = retry
        self._quote_timeout_s = quote_timeout_s
        self._rng = rng or random.Random()
        # The limit of an order that has none stored (submitted before limits existed).
        self._max_price_impact_bps = max_price_impact_bps

    async def execute(self, order_id: uuid.UUID) -> OrderStatus:
        """Drive the order until it is terminal; raises RetryLater to come back later."""
        order = await self._start(order_id)
        while not S(order.status).is_terminal:
            try:
                order = await self._step(order)
            except StaleStatusError:
                order = await self._repo.get(order_id)  # another run moved it: carry on
            except ExecutionError as error:
                try:
                    order = await self._fail_or_retry(order, error)
                except StaleStatusError:  # another run moved it first: carry on from there
                    order = await self._repo.get(order_id)
        return S(order.status)

    async def fail_after_bug(self, order_id: uuid.UUID, error: BaseException) -> bool:
        """Fail an order that hit an unexpected error, unless a transaction of it may
        have landed (then only a later run that asks the chain may decide). True if failed.
        """
        order = await self._repo.get(order_id)
        if S(order.status).is_terminal or order.tx_signature is not None:
            return S(order.status) is S.FAILED
        reason = f"internal error: {type(error).__name__}: {error}"[:500]
        await self._move(order, S.FAILED, {"reason": reason}, failure_reason=reason)
        return True

    async def _start(self, order_id: uuid.UUID) -> Order:
        """The order, moved to `routing` if it was new. Most jobs start a new order:
        moving it without reading it first saves a round trip; otherwise it is read."""
        try:
            return await self._new_attempt(order_id, S.PENDING, None)
        except StaleStatusError:
            return await self._repo.get(order_id)

    async def _new_attempt(self, order_id: uuid.UUID, previous: OrderStatus,
                           entered_at: datetime | None) -> Order:
        # The previous attempt's transaction, if any, stays stored: routing decides
        # whether it may still land (then it is sent again) or is dead (then replaced).
        return await self._move_from(order_id, previous, entered_at, S.ROUTING, {},
                                     new_attempt=True)

    async def _step(self, order: Order) -> Order:
        status = S(order.status)
        if status in (S.PENDING, S.RETRYING):
            return await self._new_attempt(order.id, status, order.updated_at)
        if status is S.ROUTING:
            return await self._route(order)
        if status is S.BUILDING:
            return await self._build_and_send(order)
        if status is S.SUBMITTED:
            return await self._confirm(order)
        raise AssertionError(f"no step for status {status}")

    async def _route(self, order: Order) -> Order:
        """Quote, choose the route, and sign its transaction: the move to `building`
        stores the route and the signed transaction together (one commit), so the
        transaction is stored before it is sent.

        Unless a previous attempt's transaction may still land or has landed (another
        run may have sent it after this one's send was dropped): then that one goes on,
        as it is, and no second swap is signed."""
        if _may_still_swap(*await self._fate(order)):
            # Stored with the transaction, in the same move.
            assert order.routing is not None
            assert order.expected_amount_out is not None
            assert order.min_amount_out is not None
            summary = {k: v for k, v in order.routing.items() if k != "steps"}
            return await self._move(order, S.BUILDING, _building_payload(
                order, order.quotes, order.route, summary, order.expected_amount_out,
                order.min_amount_out))
        plan = await quote_route(
            list(self._venues.values()), order.input_mint, order.output_mint,
            order.amount_in, self._quote_timeout_s,
        )
        minimum = min_amount_out(plan.amount_out, order.slippage_bps)
        quotes, legs, summary = venue_quotes(plan, list(plan.paths)), route_legs(plan), (
            route_summary(plan))
        refusal = self._impact_refusal(order, summary)
        if refusal is not None:
            # Nothing was signed or sent; the route it would have taken stays on the
            # order, so its owner sees the figure it failed on.
            metrics.FAILURES.labels(PriceImpactTooHighError.code).inc()
            log.info("order over its price-impact limit", order_id=str(order.id),
                     reason=refusal)
            return await self._move(order, S.FAILED, {"reason": refusal, **summary},
                                    failure_reason=refusal, quotes=quotes, route=legs,
                                    routing=summary)
        steps = execution_steps(plan)
        signed, last_valid_slot = await self._sign(order, steps, minimum)
        return await self._move(
            order,
            S.BUILDING,
            _building_payload(order, quotes, legs, summary, plan.amount_out, minimum),
            quotes=quotes,
            route=legs,
            routing={**summary, "steps": steps},
            expected_amount_out=plan.amount_out,
            min_amount_out=minimum,
            tx_signature=signed.signature,
            tx_bytes=signed.raw,
            tx_last_valid_slot=last_valid_slot,
        )

    def _impact_refusal(self, order: Order, summary: dict[str, Any]) -> str | None:
        """Why the order may not take this route (the failure reason), or None: its price
        impact, as shown, against the order's limit. Permanent, not retried: a later
        attempt would meet the same pools, less the arbitrage of a second or two."""
        if order.max_price_impact_bps is None:
            limit, source = self._max_price_impact_bps, "the default, MAX_PRICE_IMPACT_BPS"
        else:
            limit, source = order.max_price_impact_bps, "maxPriceImpactBps"
        impact = Decimal(summary["priceImpactPct"])
        if not impact_over_limit(impact, limit):
            return None
        return f"{PriceImpactTooHighError.code}: {impact_reason(impact, limit, source)}"

    async def _sign(self, order: Order, steps: list[dict[str, Any]],
                    minimum: int) -> tuple[SignedTransaction, int]:
        """The order's swap transaction, signed, and the last slot it can land in."""
        latest = await self._chain.get_latest_blockhash()
        owner = self._wallet.pubkey()
        route = route_instruction(steps, owner, order.input_mint, order.output_mint, minimum)
        memo = memo_instruction(f"order-engine:{order.id}:{order.attempts}", owner)
        signed = sign_transaction(
            self._wallet, [memo, route.to_instruction()], latest.blockhash
        )
        return signed, latest.last_valid_slot

    async def _build_and_send(self, order: Order) -> Order:
        # Never a second swap while the stored one could still land.
        fate, _ = await self._fate(order)
        if fate is _Fate.LANDED:
            return await self._move(order, S.SUBMITTED, {"txHash": order.tx_signature})
        if fate is _Fate.MAY_LAND:
            assert order.tx_bytes is not None
            await self._chain.send_transaction(order.tx_bytes)
            return await self._move(order, S.SUBMITTED, {"txHash": order.tx_signature})
        # Its blockhash expired and it never landed (or an order routed before
        # transactions were signed while routing): a new one, stored before it is sent.
        if not order.routing or order.min_amount_out is None:
            raise PermanentError("order is building but has no stored route")
        signed, last_valid_slot = await self._sign(order, order.routing["steps"],
                                                   order.min_amount_out)
        await self._repo.record_transaction(
            order.id, order.tx_signature, signed.signature, signed.raw, last_valid_slot
        )
        await self._chain.send_transaction(signed.raw)
        return await self._move(order, S.SUBMITTED, {"txHash": signed.signature})

    async def _confirm(self, order: Order) -> Order:
        signature, raw, last_valid = order.tx_signature, order.tx_bytes, order.tx_last_valid_slot
        if signature is None or raw is None or last_valid is None:
            raise PermanentError("order is submitted but has no stored transaction")
        while True:
            fate, status = await self._fate(order)
            if fate is _Fate.DEAD:
                raise BlockhashExpiredError("transaction expired before it landed")
            if status is None:  # it may still land: send it again
                await self._chain.send_transaction(raw)
                continue
            if status.err is not None:
                if status.err == SLIPPAGE_ERROR:
                    raise SlippageExceededError(status.err)
                raise InsufficientLiquidityError(status.err)
            if status.confirmed:
                break
            # Landed: wait for its confirmation (as a subscription would), not poll.
            wait_s = (status.confirmed_at - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(0.001, wait_s))
        assert status.amount_out is not None
        token_in = token_by_mint(order.input_mint)
        token_out = token_by_mint(order.output_mint)
        price = execution_price(order.amount_in, token_in, status.amount_out, token_out)
        return await self._move(
            order,
            S.CONFIRMED,
            {
                "txHash": signature,
                "amountOut": format_amount(status.amount_out, token_out),
                "executionPrice": price,
                "route": order.route,
            },
            amount_out=status.amount_out,
            execution_price=price,
        )

    async def _fail_or_retry(self, order: Order, error: ExecutionError) -> Order:
        current = S(order.status)
        log.info("attempt failed", order_id=str(order.id), attempt=order.attempts,
                 error=error.message, transient=error.transient)
        delay = retry_delay_ms(order.attempts, self._retry.base_ms, self._retry.max_ms,
                               self._rng.random())
        if isinstance(error, TransientError) and order.attempts < self._retry.max_attempts:
            metrics.RETRIES.labels(error.code).inc()
            await self._move(order, S.RETRYING, {"error": error.message, "retryInMs": delay},
                             expected=current)
            raise RetryLater(delay)
        reason = error.message
        if isinstance(error, TransientError):
            reason = f"{error.message} (gave up after {order.attempts} attempts)"
        elif not isinstance(error, PermanentError):
            reason = f"unexpected: {reason}"
        metrics.FAILURES.labels(error.code).inc()
        return await self._move(order, S.FAILED, {"reason": reason}, expected=current,
                                failure_reason=reason)

    async def _move(
        self,
        order: Order,
        target: OrderStatus,
        payload: dict[str, Any],
        *,
        expected: OrderStatus | None = None,
        new_attempt: bool = False,
        **fields: Any,
    ) -> Order:
        return await self._move_from(order.id, expected or S(order.status), order.updated_at,
                                     target, payload, new_attempt=new_attempt, **fields)

    async def _move_from(
        self,
        order_id: uuid.UUID,
        previous: OrderStatus,
        entered_at: datetime | None,  # when it entered `previous`; None: at creation
        target: OrderStatus,
        payload: dict[str, Any],
        *,
        new_attempt: bool = False,
        **fields: Any,
    ) -> Order:
        updated, event = await self._repo.transition(
            order_id, previous, target, payload, new_attempt=new_attempt, **fields,
        )
        _observe(previous, entered_at or updated.created_at, updated, event.created_at)
        await self._publisher.publish(event)
        return updated



    async def _fate(self, order: Order) -> tuple[_Fate, SignatureStatus | None]:
        """What became of the order's stored transaction, and its status if it landed."""
        signature, raw, last_valid = order.tx_signature, order.tx_bytes, order.tx_last_valid_slot
        if signature is None or raw is None or last_valid is None:
            return _Fate.NONE, None
        status = await self._chain.get_signature_status(signature)
        if status is None and not await self._chain.is_blockhash_valid(last_valid):
            # Expired by the clock: ask again once no block can be applying it.
            status = await self._chain.expired_status(raw)
            if status is None:
                return _Fate.DEAD, None
        return (_Fate.MAY_LAND, None) if status is None else (_Fate.LANDED, status)


class _Fate(enum.Enum):
    NONE = "no transaction stored"
    MAY_LAND = "not landed yet, and its blockhash is still valid"
    LANDED = "landed (with an error, or not)"
    DEAD = "expired without landing: it never will"


def _may_still_swap(fate: _Fate, status: SignatureStatus | None) -> bool:
    """The stored transaction may still land, or landed without an error."""
    return fate is _Fate.MAY_LAND or (status is not None and status.err is None)


def _building_payload(order: Order, quotes: Any, legs: Any, summary: dict[str, Any],
                      expected_out: int, minimum_out: int) -> dict[str, Any]:
    """The `building` event: the quotes and the route the transaction executes."""
    token_out = token_by_mint(order.output_mint)
    return {
        "quotes": quotes,
        "route": legs,
        **summary,
        "expectedAmountOut": format_amount(expected_out, token_out),
        "minAmountOut": format_amount(minimum_out, token_out),
    }


def _observe(previous: OrderStatus, entered_at: datetime, order: Order, at: datetime) -> None:
    """Metrics of one status change (this worker's; Prometheus adds up the workers')."""
    metrics.ORDER_TRANSITIONS.labels(order.status).inc()
    metrics.STAGE_SECONDS.labels(previous.value).observe(
        max(0.0, (at - entered_at).total_seconds()))
    if S(order.status).is_terminal:
        metrics.END_TO_END_SECONDS.labels(order.status).observe(
            (at - order.created_at).total_seconds())
        metrics.ATTEMPTS.observe(order.attempts)
