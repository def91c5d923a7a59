"""Group commit of order submissions: the ones that arrive together share one transaction.

A submission is acknowledged only after its order and first event are committed
(`synchronous_commit` on), so every acknowledgement waits for a WAL flush. Under load many
requests wait at once; here they join one transaction (two multi-row INSERTs, one flush),
then one pipelined Redis round trip enqueues all their jobs and publishes all their first
events. There is no added delay: a batch is whatever queued up while the previous one was
being committed, so a lone request goes straight through.

Submissions with an Idempotency-Key take the single-order path (their claim needs its own
lock and answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from order_engine.domain.orders import OrderStatus
from order_engine.events import event_envelope, events_channel
from order_engine.store.models import Order, OrderEvent
from order_engine.store.repository import EventRecord, NewOrder, new_order_rows

log = structlog.get_logger(__name__)

MAX_BATCH = 256
# arq's default: a job not started within a day (plus its defer) expires.
JOB_EXPIRES_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: uuid.UUID
    enqueued: bool


@dataclass(slots=True)
class _Pending:
    new: NewOrder
    future: asyncio.Future[Accepted]


class SubmissionBatcher:
    def __init__(self, engine: AsyncEngine, redis: Redis, redis_prefix: str, queue: str,
                 job_function: str) -> None:
        self._engine = engine
        self._redis = redis
        self._channel = events_channel(redis_prefix)
        self._queue_name = queue or default_queue_name
        self._job_function = job_function
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="submission-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, new: NewOrder) -> Accepted:
        """Returns once the order is committed (and its enqueue was attempted)."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        await self._pending.put(_Pending(new, future))
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
        ids = [uuid.uuid4() for _ in batch]
        rows = [new_order_rows(p.new, order_id, now) for order_id, p in zip(ids, batch,
                                                                            strict=True)]
        async with self._engine.begin() as conn:
            await conn.execute(insert(Order), [order for order, _ in rows])
            await conn.execute(insert(OrderEvent), [event for _, event in rows])
        # Committed: from here every order is acknowledged and never lost. Enqueue and
        # publish in one round trip; if Redis fails, the sweep enqueues them later.
        enqueued = await self._enqueue_and_publish(batch, ids, now)
        return [Accepted(order_id, enqueued) for order_id in ids]

    async def _enqueue_and_publish(self, batch: list[_Pending], ids: list[uuid.UUID],
                                   now: datetime) -> bool:
        enqueue_ms = int(now.timestamp() * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for order_id, item in zip(ids, batch, strict=True):
                    job_id = str(order_id)
                    # arq's job format: a fresh order id cannot have a job yet, so no
                    # WATCH is needed (NX keeps a job that somehow exists untouched).
                    job = serialize_job(self._job_function, (job_id,), {}, None, enqueue_ms)
                    pipe.set(job_key_prefix + job_id, job, px=JOB_EXPIRES_MS, nx=True)
                    pipe.zadd(self._queue_name, {job_id: enqueue_ms}, nx=True)
                    event = EventRecord(order_id, item.new.api_key_id, 1, OrderStatus.PENDING,
                                        0, {}, now)
                    pipe.publish(self._channel, event_envelope(event))
                await asyncio.wait_for(pipe.execute(), 5)
        except Exception as exc:  # noqa: BLE001 (committed; the sweep recovers the enqueue)
            log.warning("batch enqueue failed; the sweep will pick the orders up",
                        orders=len(ids), error=str(exc))
            return False
        return True
