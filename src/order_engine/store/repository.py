"""Orders and their events: every status change and its event commit together."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

import asyncpg
from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import configure_mappers

from order_engine.batching import MicroBatcher
from order_engine.domain.orders import (
    TERMINAL_STATUSES,
    OrderStatus,
    OrderType,
    check_transition,
)
from order_engine.store.db import retry_on_connection_loss
from order_engine.store.exposure import (
    OPEN_ONE_SQL,
    RESERVE_ONE_SQL,
    ExposureLimitError,
    limit_units,
)
from order_engine.store.ids import new_order_id
from order_engine.store.models import BaseUnits, IdempotencyKey, Order, OrderEvent
from order_engine.store.transitions import Move, TransitionWriter


class OrderNotFoundError(LookupError):
    pass


class StaleStatusError(Exception):
    """The order is no longer in the status the caller acted on (another run moved it)."""

    def __init__(self, order_id: uuid.UUID, actual: str) -> None:
        super().__init__(f"order {order_id} is now {actual}")
        self.actual = OrderStatus(actual)


IDEMPOTENCY_WINDOW = timedelta(hours=24)


class IdempotencyInFlightError(Exception):
    """Another request with this Idempotency-Key is being handled right now."""


class IdempotencyMismatchError(Exception):
    """This Idempotency-Key was used with a different request."""


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class Created:
    order: Order
    event: EventRecord | None  # None when replayed: nothing new happened
    replayed: bool


@dataclass(frozen=True, slots=True)
class NewOrder:
    api_key_id: uuid.UUID
    type: OrderType
    input_mint: str
    output_mint: str
    amount_in: int
    slippage_bps: int
    max_price_impact_bps: int | None = None  # None: the workers' MAX_PRICE_IMPACT_BPS


def new_order_rows(new: NewOrder, order_id: uuid.UUID, now: datetime) -> (
    tuple[dict[str, Any], dict[str, Any]]
):
    """The columns of a new order and of its first event (`pending`, seq 1)."""
    order = {"id": order_id, "api_key_id": new.api_key_id, "type": new.type.value,
             "status": OrderStatus.PENDING.value, "input_mint": new.input_mint,
             "output_mint": new.output_mint, "amount_in": new.amount_in,
             "slippage_bps": new.slippage_bps,
             "max_price_impact_bps": new.max_price_impact_bps, "attempts": 0, "last_seq": 1,
             "created_at": now, "updated_at": now}
    event = {"order_id": order_id, "seq": 1, "status": OrderStatus.PENDING.value,
             "attempt": 0, "payload": {}, "created_at": now}
    return order, event


@dataclass(frozen=True, slots=True)
class EventRecord:
    order_id: uuid.UUID
    api_key_id: uuid.UUID
    seq: int
    status: OrderStatus
    attempt: int
    payload: dict[str, Any]
    created_at: datetime

    def to_message(self) -> dict[str, Any]:
        """The WebSocket / pub-sub shape of the event (the contract's `order.status`)."""
        return {
            "type": "order.status",
            "orderId": str(self.order_id),
            "seq": self.seq,
            "status": self.status.value,
            "timestamp": self.created_at.isoformat().replace("+00:00", "Z"),
            "attempt": self.attempt,
            **self.payload,
        }


def _now() -> datetime:
    return datetime.now(UTC)


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    """The cursor of the page that follows the order created at `created_at` with this id."""
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class InvalidCursorError(ValueError):
    pass


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, order_id = base64.urlsafe_b64decode(padded).decode().split("|")
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive")
        # In UTC, as PostgreSQL takes it: a date that leaves datetime's range there (year
        # 1 with a positive offset, 9999 with a negative one) is refused here, not by the
        # database (which made it a 503 with Retry-After: clients retried it forever).
        return at.astimezone(UTC), uuid.UUID(order_id)
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise InvalidCursorError("cursor is not one this server issued") from None


# Base-unit columns: NUMERIC in PostgreSQL, int here.
_UNITS_COLUMNS = frozenset(
    c.name for c in Order.__table__.columns if isinstance(c.type, BaseUnits))


# An Order as the ORM's own loader makes one: its values put straight in its __dict__.
# Order(**values) sets each column through the instrumentation, about 20x the cost: a
# worker makes several per order step. These objects are read, never added to a session.
# The attributes only read from __dict__ once the mappers are configured, which
# Order(...) or a first query would otherwise do: done here, before any is made.
configure_mappers()
_new_order = Order.__mapper__.class_manager.new_instance


def _order_from_record(record: asyncpg.Record) -> Order:
    order: Order = _new_order()
    values = order.__dict__
    values.update(record.items())
    for name in _UNITS_COLUMNS:
        if values[name] is not None:
            values[name] = int(values[name])
    return order


@dataclass(frozen=True, slots=True)
class _SignedTx:
    """A signed transaction to keep on its order (the fields in the statement's order)."""

    order_id: uuid.UUID
    replaces: str | None
    signature: str
    tx_bytes: bytes
    last_valid_slot: int
    at: datetime


class OrderRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], pg: asyncpg.Pool,
                 exposure_limit: Decimal = Decimal("1000000000")) -> None:
        self._sessions = sessions
        self._pg = pg
        self._exposure_limit = exposure_limit  # MAX_KEY_EXPOSURE, token units
        self._moves = TransitionWriter(pg)
        self._signed: MicroBatcher[_SignedTx, bool] = MicroBatcher(
            self._record_signed, key=lambda tx: tx.order_id)
        self._order_reads: MicroBatcher[uuid.UUID, Any] = MicroBatcher(
            self._read_orders, key=lambda order_id: order_id)

    async def create(self, new: NewOrder) -> tuple[Order, EventRecord]:
        created = await self.create_idempotent(new, None)
        assert created.event is not None
        return created.order, created.event

    async def create_idempotent(self, new: NewOrder, claim: IdempotencyClaim | None) -> Created:
        """Store a new order, or with an Idempotency-Key, replay the one the key made.

        The key is claimed under a transaction-scoped advisory lock, in the same transaction
        as the order: a concurrent request with the same key cannot take the lock and is told
        it is in flight; once the first commits, the key and its order are there to replay.

        If the connection breaks, the whole transaction is tried again, with the same order
        id: had the first try committed before the break, the retry finds that order (by
        its key, or by its id) and answers as the first try would have, stores nothing.
        """
        now = _now()
        new_id = new_order_id(now)
        return await retry_on_connection_loss(
            lambda attempt: self._create(new, claim, new_id, now, retried=attempt > 0),
            "order submission")

    async def _create(self, new: NewOrder, claim: IdempotencyClaim | None,
                      order_id: uuid.UUID, now: datetime, *, retried: bool) -> Created:
        order_row, event_row = new_order_rows(new, order_id, now)
        order, event = Order(**order_row), OrderEvent(**event_row)
        ours = Created(order, _event_record(event, new.api_key_id), replayed=False)
        async with self._sessions.begin() as session:
            if claim is not None:
                replay = await self._claim(session, new.api_key_id, claim, now)
                if replay is not None:
                    if replay.id == order_id:  # this request's own, committed by a try
                        return Created(replay, ours.event, replayed=False)
                    return Created(replay, None, replayed=True)
            elif retried and (stored := await session.get(Order, order_id)) is not None:
                return Created(stored, ours.event, replayed=False)
            session.add(order)
            await session.flush()
            session.add(event)
            if claim is not None:
                session.add(IdempotencyKey(api_key_id=new.api_key_id, key=claim.key,
                                           request_hash=claim.request_hash,
                                           order_id=order.id, created_at=now))
            await session.flush()
            # Last, just before the commit: the key's row stays locked until then, and
            # every submission of the key in this token waits for it.
            await self._reserve_exposure(session, new)
        return ours

    async def _reserve_exposure(self, session: AsyncSession, new: NewOrder) -> None:
        """Add the order to its key's exposure in this transaction, or raise
        ExposureLimitError (store/exposure.py; the batch path does the same in SQL)."""
        limit = limit_units(self._exposure_limit, new.input_mint)
        params = {"key": new.api_key_id, "mint": new.input_mint,
                  "amount": Decimal(new.amount_in), "limit": Decimal(limit)}
        if (await session.execute(text(RESERVE_ONE_SQL), params)).first() is None:
            open_amount = await session.scalar(text(OPEN_ONE_SQL), params)
            raise ExposureLimitError(new.api_key_id, new.input_mint, int(open_amount or 0),
                                     new.amount_in, limit)

    async def _claim(
        self, session: AsyncSession, api_key_id: uuid.UUID, claim: IdempotencyClaim,
        now: datetime,
    ) -> Order | None:
        digest = hashlib.sha256(f"{api_key_id}:{claim.key}".encode()).digest()
        lock_id = int.from_bytes(digest[:8], "big", signed=True)
        if not await session.scalar(select(func.pg_try_advisory_xact_lock(lock_id))):
            raise IdempotencyInFlightError(claim.key)
        row = await session.get(IdempotencyKey, (api_key_id, claim.key))
        if row is None:
            return None
        if row.created_at <= now - IDEMPOTENCY_WINDOW:
            await session.delete(row)  # expired: the key may be used afresh
            await session.flush()
            return None
        if row.request_hash != claim.request_hash:
            raise IdempotencyMismatchError(claim.key)
        return await session.get(Order, row.order_id)

    async def delete_expired_idempotency_keys(self) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.created_at <= _now() - IDEMPOTENCY_WINDOW
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def get(self, order_id: uuid.UUID, api_key_id: uuid.UUID | None = None) -> Order:
        if api_key_id is None:  # the workers': those asked at the same time, in one query
            record = await self._order_reads.submit(order_id)
        else:
            record = await self._pg.fetchrow(
                "SELECT * FROM orders WHERE id = $1 AND api_key_id = $2", order_id, api_key_id)
        if record is None:
            raise OrderNotFoundError(str(order_id))
        return _order_from_record(record)

    async def _read_orders(self, order_ids: list[uuid.UUID]) -> list[Any]:
        rows = {row["id"]: row for row in await self._pg.fetch(
            "SELECT * FROM orders WHERE id = ANY($1::uuid[])", order_ids)}
        return [rows.get(order_id) for order_id in order_ids]

    async def list_page(
        self,
        api_key_id: uuid.UUID,
        status: OrderStatus | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Order], str | None]:
        stmt = select(Order).where(Order.api_key_id == api_key_id)
        if status is not None:
            stmt = stmt.where(Order.status == status.value)
        if cursor:
            # One row comparison, not `a < x OR (a = x AND b < y)`: PostgreSQL takes it as
            # the index's start key, so a page 990,000 rows deep costs what the first does.
            stmt = stmt.where(tuple_(Order.created_at, Order.id) < tuple_(*decode_cursor(cursor)))
        stmt = stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
        async with self._sessions() as session:
            orders = list((await session.execute(stmt)).scalars())
        next_cursor = None
        if len(orders) > limit:
            next_cursor = encode_cursor(orders[limit - 1].created_at, orders[limit - 1].id)
        return orders[:limit], next_cursor

    async def stale_unfinished(self, older_than_s: float, limit: int = 1000) -> list[uuid.UUID]:
        """Orders not terminal and not moved for `older_than_s`: candidates for re-enqueue."""
        cutoff = _now() - timedelta(seconds=older_than_s)
        stmt = (
            select(Order.id)
            .where(Order.status.not_in([s.value for s in TERMINAL_STATUSES]),
                   Order.updated_at < cutoff)
            .order_by(Order.updated_at)
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.execute(stmt)).scalars())

    async def events(self, order_id: uuid.UUID, after_seq: int = 0) -> list[EventRecord]:
        records = await self._pg.fetch(
            "SELECT e.seq, e.status, e.attempt, e.payload, e.created_at, o.api_key_id "
            "FROM order_events e JOIN orders o ON o.id = e.order_id "
            "WHERE e.order_id = $1 AND e.seq > $2 ORDER BY e.seq",
            order_id, after_seq,
        )
        return [EventRecord(order_id, r["api_key_id"], r["seq"], OrderStatus(r["status"]),
                            r["attempt"], r["payload"], r["created_at"]) for r in records]

    async def transition(
        self,
        order_id: uuid.UUID,
        expected: OrderStatus,
        target: OrderStatus,
        payload: dict[str, Any] | None = None,
        *,
        new_attempt: bool = False,
        **fields: Any,
    ) -> tuple[Order, EventRecord]:
        """Move the order from `expected` to `target`, set `fields`, append the event.

        A compare-and-set in one statement (UPDATE ... WHERE status = expected RETURNING),
        so two runs of the same job cannot both make the move: the loser gets
        StaleStatusError and carries on from what the winner wrote. Concurrent changes
        share statements (store/transitions.py).
        """
        check_transition(expected, target)
        now = _now()
        names = tuple(fields)
        record = await self._moves.move(
            Move(order_id, expected.value, target.value, now, payload or {},
                 tuple(fields[name] for name in names)),
            names, new_attempt)
        if record is None:
            await self._raise_stale(order_id)
        order = _order_from_record(record)
        return order, EventRecord(order_id, order.api_key_id, order.last_seq, target,
                                  order.attempts, dict(payload or {}), now)

    async def record_transaction(
        self,
        order_id: uuid.UUID,
        replaces: str | None,
        signature: str,
        tx_bytes: bytes,
        last_valid_slot: int,
    ) -> None:
        """Keep the signed transaction before it is sent (the order stays `building`).

        A compare-and-set on the previous signature (`replaces`), so two runs racing to
        build cannot both store, and so both send, a transaction. Those recorded at the
        same time share one statement (one commit).
        """
        stored = await self._signed.submit(
            _SignedTx(order_id, replaces, signature, tx_bytes, last_valid_slot, _now()))
        if not stored:
            await self._raise_stale(order_id)

    async def _record_signed(self, batch: list[_SignedTx]) -> list[bool | Exception]:
        stored = {record["id"] for record in await self._pg.fetch(
            "UPDATE orders o SET tx_signature = t.signature, tx_bytes = t.tx_bytes, "
            "tx_last_valid_slot = t.last_valid_slot, updated_at = t.at "
            "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::bigint[], "
            "$6::timestamptz[]) AS t(id, replaces, signature, tx_bytes, last_valid_slot, at) "
            "WHERE o.id = t.id AND o.status = $7 "
            "AND o.tx_signature IS NOT DISTINCT FROM t.replaces RETURNING o.id",
            *([getattr(tx, field.name) for tx in batch] for field in fields(_SignedTx)),
            OrderStatus.BUILDING.value,
        )}
        return [tx.order_id in stored for tx in batch]

    async def _raise_stale(self, order_id: uuid.UUID) -> NoReturn:
        """The compare-and-set found the order elsewhere: say where (or that it is gone)."""
        current = await self._pg.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        if current is None:
            raise OrderNotFoundError(str(order_id))
        raise StaleStatusError(order_id, current)


def _event_record(event: OrderEvent, api_key_id: uuid.UUID) -> EventRecord:
    return EventRecord(
        order_id=event.order_id,
        api_key_id=api_key_id,
        seq=event.seq,
        status=OrderStatus(event.status),
        attempt=event.attempt,
        payload=dict(event.payload),
        created_at=event.created_at,
    )
