"""Group commit of order submissions: the ones that arrive together share one transaction.

A submission is acknowledged only after its order and first event are committed
(`synchronous_commit` on), so every acknowledgement waits for a WAL flush. Under load many
requests wait at once; here they join one transaction (two multi-row INSERTs, one flush),
then one Redis command (a script) enqueues all their jobs and publishes all their first
events. There is no added delay: a batch is whatever queued up while the previous one was
being committed, so a lone request goes straight through.

The batch is written by one statement through the plain asyncpg pool: both INSERTs take
their rows as arrays (`unnest`), joined by a data-modifying CTE, so a batch is one round
trip and one implicit transaction (the events' foreign keys are checked at the end of
the statement, after the orders are in). SQLAlchemy's executemany cost a BEGIN, a
pre-ping, two statements and a COMMIT per batch, plus compiling every row's parameters.

A batch whose connection breaks is written again on another (db.retry_on_connection_loss),
with the same order ids: if the first try had committed before the break, the orders'
primary key refuses the rows a second time and they are found stored, so no order is
ever stored twice, and the submitter is answered as if nothing had happened.

Submissions with an Idempotency-Key take the single-order path (their claim needs its own
lock and answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis
from sqlalchemy import Table

from order_engine.domain.orders import OrderStatus
from order_engine.events import event_envelope, events_channel
from order_engine.store.db import pg_array_type, retry_on_connection_loss
from order_engine.store.exposure import ENSURE_ROWS_SQL, ExposureLimitError, limit_units
from order_engine.store.ids import new_order_id
from order_engine.store.models import Order, OrderEvent
from order_engine.store.repository import EventRecord, NewOrder, new_order_rows

log = structlog.get_logger(__name__)

MAX_BATCH = 256
# arq's default: a job not started within a day (plus its defer) expires.
JOB_EXPIRES_MS = 86_400_000

# Enqueues a batch's arq jobs and publishes their first events in one command. A pipeline
# did the same in one round trip too, but with three replies per order, and redis-py
# reads each reply under its own asyncio timeout: that parsing was most of the batch's
# Redis cost on the API's CPU. A script answers once. arq's job format: a fresh order id
# cannot have a job yet, so no WATCH is needed (NX keeps a job that somehow exists).
# KEYS: the queue, then each order's job key; ARGV: expiry (ms), score (the enqueue time,
# ms), the events channel, the workers' wake channel, then per order its job id,
# serialized job and event.
ENQUEUE_AND_PUBLISH = """
local expires, score, channel, wake = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i = 2, #KEYS do
  local at = 5 + (i - 2) * 3
  redis.call('SET', KEYS[i], ARGV[at + 1], 'PX', expires, 'NX')
  redis.call('ZADD', KEYS[1], 'NX', score, ARGV[at])
  redis.call('PUBLISH', channel, ARGV[at + 2])
end
redis.call('PUBLISH', wake, #KEYS - 1)
return #KEYS - 1
"""


def wake_channel(queue: str) -> str:
    """Told of every enqueue, so that an idle worker starts the job at once rather than
    at its next look at the queue (OrderWorker)."""
    return f"{queue}:wake"


def _unnest(table: Table, columns: Sequence[str], first_param: int) -> str:
    """`unnest($1::A[], $2::B[]) WITH ORDINALITY AS alias(a, b, n)`: one parameter per
    column, each an array of that column's values (types from the table's definition),
    and each row's position `n` (from 1)."""
    arrays = ", ".join(
        f"${first_param + i}::{pg_array_type(table.c[name])}" for i, name in enumerate(columns)
    )
    return f"unnest({arrays}) WITH ORDINALITY AS {table.name}_in({', '.join(columns)}, n)"


@functools.cache
def batch_insert_sql(order_columns: tuple[str, ...], event_columns: tuple[str, ...]) -> str:
    """The one statement that stores a batch: its orders, then their first events. The
    columns are those `new_order_rows` fills, so it stays the one place that says what a
    new order is; the text is the same for every batch (a cached prepared statement).

    Each key's exposure (store/exposure.py) in each input token is raised by the orders
    that fit, in the batch's order (a running total per key and token, so the ones that
    fit are the first ones), in the statement that stores them; the last parameter is each
    order's limit in base units. It answers, per key and token of the batch, what it
    admitted (`last_granted`, the running total of the orders stored) and the sum after.
    """
    orders_in = _unnest(Order.__table__, order_columns, 1)  # type: ignore[arg-type]
    events_in = _unnest(OrderEvent.__table__, event_columns,  # type: ignore[arg-type]
                        len(order_columns) + 1)
    limits = len(order_columns) + len(event_columns) + 1
    # The same parameters as the orders' columns, with the same types.
    key, mint, amount = (
        f"${order_columns.index(name) + 1}::{pg_array_type(Order.__table__.c[name])}"
        for name in ("api_key_id", "input_mint", "amount_in"))
    fits = ("coalesce((SELECT max(q.running) FROM req q WHERE q.api_key_id = e.api_key_id "
            "AND q.input_mint = e.input_mint AND e.open_amount + q.running <= q.lim), 0)")
    return (
        "WITH req AS (SELECT r.n, r.api_key_id, r.input_mint, r.lim, sum(r.amount) OVER "
        "(PARTITION BY r.api_key_id, r.input_mint ORDER BY r.n) AS running "
        f"FROM unnest({key}, {mint}, {amount}, "
        f"${limits}::numeric[]) WITH ORDINALITY AS r(api_key_id, input_mint, amount, lim, n)), "
        f"granted AS (UPDATE key_exposure e SET last_granted = {fits}, "
        f"open_amount = e.open_amount + {fits} "
        "WHERE (e.api_key_id, e.input_mint) IN (SELECT api_key_id, input_mint FROM req) "
        "RETURNING e.api_key_id, e.input_mint, e.last_granted, e.open_amount), "
        "admitted AS (SELECT q.n FROM req q JOIN granted g "
        "ON g.api_key_id = q.api_key_id AND g.input_mint = q.input_mint "
        "WHERE q.running <= g.last_granted), "
        f"new_orders AS (INSERT INTO orders ({', '.join(order_columns)}) "
        f"SELECT {', '.join(order_columns)} FROM {orders_in} "
        "WHERE n IN (SELECT n FROM admitted) RETURNING id), "
        f"new_events AS (INSERT INTO order_events ({', '.join(event_columns)}) "
        f"SELECT {', '.join(event_columns)} FROM {events_in} "
        "WHERE order_id IN (SELECT id FROM new_orders)) "
        "SELECT api_key_id, input_mint, last_granted, open_amount FROM granted"
    )


def _columns(rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[Any]]]:
    """Rows (dicts with the same keys) as column names and one list of values per column."""
    names = tuple(rows[0])
    return names, [[row[name] for row in rows] for name in names]


# Per key and input token: the running total the batch admitted, and the exposure after
# (None when not known: a retried batch found committed).
_Granted = dict[tuple[uuid.UUID, str], tuple[int, int | None]]


def _granted_from_stored(ids: list[uuid.UUID], news: list[NewOrder],
                         stored: set[uuid.UUID]) -> _Granted:
    """What a committed try admitted, from which of its orders are stored."""
    granted: _Granted = {}
    running: dict[tuple[uuid.UUID, str], int] = {}
    for order_id, new in zip(ids, news, strict=True):
        group = (new.api_key_id, new.input_mint)
        running[group] = running.get(group, 0) + new.amount_in
        if order_id in stored:
            granted[group] = (running[group], None)
    return granted


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: uuid.UUID
    enqueued: bool


@dataclass(slots=True)
class _Pending:
    new: NewOrder
    future: asyncio.Future[Accepted]


class SubmissionBatcher:
    def __init__(self, pg: asyncpg.Pool, redis: Redis, redis_prefix: str, queue: str,
                 job_function: str, exposure_limit: Decimal) -> None:
        self._pg = pg
        self._exposure_limit = exposure_limit  # MAX_KEY_EXPOSURE, token units
        self._exposure_rows: set[tuple[uuid.UUID, str]] = set()
        self._redis = redis
        self._channel = events_channel(redis_prefix)
        self._queue_name = queue or default_queue_name
        self._job_function = job_function
        self._enqueue_script = redis.register_script(ENQUEUE_AND_PUBLISH)
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        # Kept: on Python 3.11 asyncio.get_running_loop() costs a getpid() system call,
        # which showed in the profile at one per submission.
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="submission-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, new: NewOrder) -> Accepted:
        """Returns once the order is committed (and its enqueue was attempted); raises
        ExposureLimitError when it would take its key over MAX_KEY_EXPOSURE."""
        assert self._loop is not None, "start() first"
        future: asyncio.Future[Accepted] = self._loop.create_future()
        self._pending.put_nowait(_Pending(new, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < MAX_BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                accepted = await self._commit(batch)
            except Exception as exc:  # noqa: BLE001 (every waiter gets the failure)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(batch, accepted, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, Exception):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    async def _commit(self, batch: list[_Pending]) -> list[Accepted | Exception]:
        now = datetime.now(UTC)
        ids = [new_order_id(now) for _ in batch]
        rows = [new_order_rows(p.new, order_id, now) for order_id, p in zip(ids, batch,
                                                                            strict=True)]
        order_columns, order_values = _columns([order for order, _ in rows])
        event_columns, event_values = _columns([event for _, event in rows])
        await self._ensure_exposure_rows(batch)
        limits = [limit_units(self._exposure_limit, p.new.input_mint) for p in batch]
        # A single statement commits on its own, with synchronous_commit on: when it
        # returns, the batch's WAL is flushed.
        sql = batch_insert_sql(order_columns, event_columns)
        granted = await retry_on_connection_loss(
            functools.partial(self._insert, sql, [*order_values, *event_values, limits],
                              ids, [p.new for p in batch], now),
            "submission batch")
        results: list[Accepted | Exception] = []
        running: dict[tuple[uuid.UUID, str], int] = {}
        admitted: list[tuple[_Pending, uuid.UUID]] = []
        for order_id, item, limit in zip(ids, batch, limits, strict=True):
            group = (item.new.api_key_id, item.new.input_mint)
            total = running[group] = running.get(group, 0) + item.new.amount_in
            last_granted, open_amount = granted.get(group, (-1, None))
            if total <= last_granted:
                admitted.append((item, order_id))
                results.append(Accepted(order_id, False))
                continue
            results.append(ExposureLimitError(
                item.new.api_key_id, item.new.input_mint,
                open_amount if open_amount is not None else 0, item.new.amount_in, limit))
        # Committed: from here every order is acknowledged and never lost. Enqueue and
        # publish in one round trip; if Redis fails, the sweep enqueues them later.
        if admitted:
            enqueued = await self._enqueue_and_publish(
                [item for item, _ in admitted], [order_id for _, order_id in admitted], now)
            results = [Accepted(r.order_id, enqueued) if isinstance(r, Accepted) else r
                       for r in results]
        return results

    async def _ensure_exposure_rows(self, batch: list[_Pending]) -> None:
        """Each key's exposure row for each input token, created the first time this
        process sees the pair (rows are never deleted), so the batch's UPDATE finds it."""
        missing = {(p.new.api_key_id, p.new.input_mint) for p in batch} - self._exposure_rows
        if not missing:
            return
        keys, mints = zip(*missing, strict=True)
        await retry_on_connection_loss(
            lambda _: self._pg.execute(ENSURE_ROWS_SQL, list(keys), list(mints)),
            "exposure rows")
        self._exposure_rows |= missing

    async def _insert(self, sql: str, args: list[list[Any]], ids: list[uuid.UUID],
                      news: list[NewOrder], now: datetime, attempt: int) -> _Granted:
        """The batch's statement: per key and input token, what it admitted (the running
        total of the orders stored) and the exposure after. Tried again (`attempt` > 0)
        after the connection broke, it may find the rows committed by the try whose
        answer was lost: the orders' primary key refuses them (waiting, if that try's
        transaction is still open, for it to end), and those of them that were admitted
        are there (one statement, one transaction): the orders found are the admitted."""
        try:
            records = await self._pg.fetch(sql, *args)
        except asyncpg.UniqueViolationError:
            if attempt == 0:
                raise
            stored = await self._stored(ids, now)
            if not stored:
                raise
            log.info("submission batch found committed by the try whose answer was lost",
                     orders=len(stored))
            return _granted_from_stored(ids, news, stored)
        return {(r["api_key_id"], r["input_mint"]): (int(r["last_granted"]),
                                                     int(r["open_amount"]))
                for r in records}

    async def _stored(self, ids: list[uuid.UUID], now: datetime) -> set[uuid.UUID]:
        return {record["id"] for record in await self._pg.fetch(
            "SELECT id FROM orders WHERE id = ANY($1::uuid[]) AND created_at = $2",
            ids, now)}

    async def _enqueue_and_publish(self, batch: list[_Pending], ids: list[uuid.UUID],
                                   now: datetime) -> bool:
        enqueue_ms = int(now.timestamp() * 1000)
        keys: list[str] = [self._queue_name]
        args: list[str | bytes | int] = [JOB_EXPIRES_MS, enqueue_ms, self._channel,
                                         wake_channel(self._queue_name)]
        for order_id, item in zip(ids, batch, strict=True):
            job_id = str(order_id)
            keys.append(job_key_prefix + job_id)
            event = EventRecord(order_id, item.new.api_key_id, 1, OrderStatus.PENDING, 0, {},
                                now)
            args += (job_id,
                     serialize_job(self._job_function, (job_id,), {}, None, enqueue_ms),
                     event_envelope(event))
        try:
            await asyncio.wait_for(self._enqueue_script(keys=keys, args=args), 5)
        except Exception as exc:  # noqa: BLE001 (committed; the sweep recovers the enqueue)
            log.warning("batch enqueue failed; the sweep will pick the orders up",
                        orders=len(ids), error=str(exc))
            return False
        return True
