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


def _unnest_insert(table: Table, columns: Sequence[str], first_param: int) -> str:
    """`INSERT INTO t (a, b) SELECT * FROM unnest($1::A[], $2::B[])`: one parameter per
    column, each an array of that column's values (types from the table's definition)."""
    arrays = ", ".join(
        f"${first_param + i}::{pg_array_type(table.c[name])}" for i, name in enumerate(columns)
    )
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


@functools.cache
def batch_insert_sql(order_columns: tuple[str, ...], event_columns: tuple[str, ...]) -> str:
    """The one statement that stores a batch: its orders, then their first events. The
    columns are those `new_order_rows` fills, so it stays the one place that says what a
    new order is; the text is the same for every batch (a cached prepared statement)."""
    orders = _unnest_insert(Order.__table__, order_columns, 1)  # type: ignore[arg-type]
    events = _unnest_insert(OrderEvent.__table__, event_columns,  # type: ignore[arg-type]
                            len(order_columns) + 1)
    return f"WITH new_orders AS ({orders}) {events}"


def _columns(rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[Any]]]:
    """Rows (dicts with the same keys) as column names and one list of values per column."""
    names = tuple(rows[0])
    return names, [[row[name] for row in rows] for name in names]


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
                 job_function: str) -> None:
        self._pg = pg
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
        """Returns once the order is committed (and its enqueue was attempted)."""
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
                if not item.future.done():
                    item.future.set_result(result)

    async def _commit(self, batch: list[_Pending]) -> list[Accepted]:
        now = datetime.now(UTC)
        ids = [new_order_id(now) for _ in batch]
        rows = [new_order_rows(p.new, order_id, now) for order_id, p in zip(ids, batch,
                                                                            strict=True)]
        order_columns, order_values = _columns([order for order, _ in rows])
        event_columns, event_values = _columns([event for _, event in rows])
        # A single statement commits on its own, with synchronous_commit on: when it
        # returns, the batch's WAL is flushed.
        sql = batch_insert_sql(order_columns, event_columns)
        await retry_on_connection_loss(
            functools.partial(self._insert, sql, [*order_values, *event_values], ids, now),
            "submission batch")
        # Committed: from here every order is acknowledged and never lost. Enqueue and
        # publish in one round trip; if Redis fails, the sweep enqueues them later.
        enqueued = await self._enqueue_and_publish(batch, ids, now)
        return [Accepted(order_id, enqueued) for order_id in ids]

    async def _insert(self, sql: str, args: list[list[Any]], ids: list[uuid.UUID],
                      now: datetime, attempt: int) -> None:
        """The batch's statement. Tried again (`attempt` > 0) after the connection broke,
        it may find the rows committed by the try whose answer was lost: the orders'
        primary key refuses them (waiting, if that try's transaction is still open, for it
        to end), and they are there, all of them (one statement, one transaction)."""
        try:
            await self._pg.execute(sql, *args)
        except asyncpg.UniqueViolationError:
            if attempt == 0 or not await self._stored(ids, now):
                raise
            log.info("submission batch found committed by the try whose answer was lost",
                     orders=len(ids))

    async def _stored(self, ids: list[uuid.UUID], now: datetime) -> bool:
        stored = await self._pg.fetchval(
            "SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]) AND created_at = $2",
            ids, now)
        return bool(stored == len(ids))

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
