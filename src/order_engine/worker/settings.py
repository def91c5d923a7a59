"""The arq worker: settings and the one job it runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from datetime import timedelta
from typing import Any

import structlog
from arq import Retry, cron
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Function, Worker, func
from prometheus_client import start_http_server
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from order_engine import metrics
from order_engine.config import Settings
from order_engine.domain.orders import OrderStatus
from order_engine.market.transactions import engine_wallet
from order_engine.services import EXECUTE_ORDER_JOB, Services, open_services, queue_name
from order_engine.services import redis_settings as arq_redis_settings
from order_engine.store.db import DATABASE_ERRORS
from order_engine.store.repository import OrderNotFoundError
from order_engine.store.submissions import wake_channel
from order_engine.worker.lease import LeaseKeeper
from order_engine.worker.pipeline import OrderExecutor, RetryLater, RetryPolicy

log = structlog.get_logger(__name__)

# Attempts are counted on the order's own record; arq's try counter (which also counts
# crash re-runs) must never be what fails an order, so it is set far out of reach.
ARQ_MAX_TRIES = 10_000
JOB_TIMEOUT_S = 120


# PostgreSQL or Redis unreachable, a statement timeout: the order is fine where it is
# (every step is checkpointed), so the job simply runs again a little later.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    *DATABASE_ERRORS, RedisError, OSError, TimeoutError,
)
INFRASTRUCTURE_RETRY = timedelta(seconds=1)
BUG_RETRY = timedelta(seconds=5)


async def execute_order(ctx: dict[str, Any], order_id: str) -> str:
    executor: OrderExecutor = ctx["executor"]
    leases: LeaseKeeper = ctx["leases"]
    oid = uuid.UUID(order_id)
    metrics.JOBS_IN_FLIGHT.inc()
    structlog.contextvars.bind_contextvars(order_id=order_id, job_try=ctx.get("job_try"))
    try:
        async with leases.hold(ctx["job_id"]):
            status = await executor.execute(oid)
    except RetryLater as later:
        raise Retry(defer=timedelta(milliseconds=later.delay_ms)) from None
    except OrderNotFoundError:
        # Orders are committed before their jobs are enqueued and never deleted by the
        # service: a job whose order is gone (removed by hand, a restore) has nothing to do.
        log.error("order of this job does not exist; job dropped", order_id=order_id)
        return "missing"
    except INFRASTRUCTURE_ERRORS as exc:
        log.warning("infrastructure error; order job will run again", order_id=order_id,
                    error=f"{type(exc).__name__}: {exc}")
        raise Retry(defer=INFRASTRUCTURE_RETRY) from None
    except Exception as exc:
        log.exception("unexpected error executing order", order_id=order_id)
        if await executor.fail_after_bug(oid, exc):
            return OrderStatus.FAILED.value
        raise Retry(defer=BUG_RETRY) from None
    finally:
        metrics.JOBS_IN_FLIGHT.dec()
        structlog.contextvars.unbind_contextvars("order_id", "job_try")
    return status.value


async def sweep_unfinished_orders(ctx: dict[str, Any]) -> int:
    """Re-enqueue acknowledged orders that no job is carrying; returns how many were."""
    services: Services = ctx["services"]
    stale = await services.orders.stale_unfinished(services.settings.sweep_stale_s)
    # Under a backlog most stale orders are simply queued: look for their jobs in one
    # round trip rather than attempt an enqueue (a WATCH transaction) for each.
    async with services.redis.pipeline(transaction=False) as pipe:
        for order_id in stale:
            pipe.exists(job_key_prefix + str(order_id))
        carried = await pipe.execute()
    enqueued = 0
    for order_id, has_job in zip(stale, carried, strict=True):
        # Job id = order id: arq refuses the enqueue while a job for it is queued,
        # deferred or running (one may have appeared since), so this only revives
        # orders nothing is working on.
        if not has_job and await services.enqueue_order(str(order_id)):
            enqueued += 1
    if enqueued:
        log.warning("sweep re-enqueued unfinished orders", count=enqueued)
    await services.orders.delete_expired_idempotency_keys()
    return enqueued


def build_executor(services: Services) -> OrderExecutor:
    s = services.settings
    return OrderExecutor(
        repo=services.orders,
        chain=services.chain,
        venues=services.venues,
        publisher=services.publisher,
        wallet=engine_wallet(),
        retry=RetryPolicy(s.max_attempts, s.retry_base_ms, s.retry_max_ms),
        quote_timeout_s=s.quote_timeout_s,
        rng=services.rng,
        max_price_impact_bps=s.max_price_impact_bps,
    )


def execute_order_function() -> Function:
    return func(
        execute_order, name=EXECUTE_ORDER_JOB, max_tries=ARQ_MAX_TRIES, timeout=JOB_TIMEOUT_S
    )


# Claims jobs for a worker in one round trip. For each candidate job, what arq checks in a
# WATCH transaction of four round trips: not in progress anywhere, still queued, due;
# then marks it in progress. A script runs atomically, so the guard is the same: no job
# is started twice. An order's job (its id is the order id) is marked for the lease
# alone, so a worker killed between the claim and the job's start loses it within the
# lease, not after arq's whole timeout (130 s, seen in a chaos run); cron jobs (ids
# `name:time`, with a colon) keep arq's timeout. KEYS: the queue, then each candidate's
# in-progress key; ARGV: now (ms), the in-progress timeout (ms), the lease (ms), how many
# to claim at most, then each candidate's job id. Returns the claimed job ids and their
# scores, interleaved.
CLAIM_JOBS = """
local now, timeout, lease = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local wanted = tonumber(ARGV[4])
local claimed = {}
for i = 2, #KEYS do
  if #claimed >= 2 * wanted then break end
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local job_id = ARGV[i + 3]
    local score = redis.call('ZSCORE', KEYS[1], job_id)
    if score and tonumber(score) <= now then
      local ttl = lease
      if string.find(job_id, ':', 1, true) then ttl = timeout end
      redis.call('PSETEX', KEYS[i], ttl, '1')
      claimed[#claimed + 1] = job_id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
"""


# At most this many jobs started per poll (every 10 ms): a worker with room for thousands
# would otherwise start them all in one turn of its event loop, and every one's first
# round trips would wait behind all the others' (lease renewals timed out).
MAX_CLAIMS_PER_POLL = 200


def _untrack(leases: LeaseKeeper, key: str, _: asyncio.Task[Any]) -> None:
    leases.untrack(key)


class OrderWorker(Worker):
    """arq's worker, claiming the jobs of a poll in one round trip, and woken by enqueues.

    A job stays in arq's queue until it finishes, so every poll reads the running jobs
    (this worker's and the others') again at the head of the queue. arq then claims
    candidates one at a time, each with a WATCH transaction of four round trips; on a
    worker busy with hundreds of orders every round trip waits for a turn of the event
    loop, and claiming became what limited throughput (~115 jobs/s per worker). Here this
    worker's own running jobs are skipped from memory, and the rest are claimed by one
    script (CLAIM_JOBS), as many as the worker has room for (up to MAX_CLAIMS_PER_POLL).

    arq looks at the queue every poll_delay (10 ms: half of it on average was most of a
    lone order's latency). Enqueues also publish on the queue's wake channel: a worker
    listening there looks at once. The periodic poll stays, so a lost wake-up only costs
    the delay it saves.
    """

    def __init__(self, *args: Any, wake_channel: str | None = None, lease_s: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lease_s = lease_s
        self._wake_channel = wake_channel
        self._claiming = asyncio.Lock()  # the periodic poll and a wake-up, one at a time
        self._claim_jobs: AsyncScript | None = None
        self._waker: asyncio.Task[None] | None = None
        self._giving_back: set[asyncio.Future[Any]] = set()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._waker is None and self._wake_channel is not None:  # the pool exists now
            self._waker = asyncio.create_task(self._poll_when_woken(self._wake_channel))
        async with self._claiming:
            await self._claim_and_start(job_ids)

    async def _claim_and_start(self, job_ids: list[bytes]) -> None:
        room = min(self.max_jobs - self.job_counter, MAX_CLAIMS_PER_POLL)
        candidates = [job_id.decode() for job_id in job_ids]
        candidates = [job_id for job_id in candidates if job_id not in self.tasks]
        if room <= 0 or not candidates or not self.allow_pick_jobs:  # e.g. shutting down
            return
        if self._claim_jobs is None:
            self._claim_jobs = self.pool.register_script(CLAIM_JOBS)
        claim = asyncio.ensure_future(self._claim_jobs(
            keys=[self.queue_name, *(in_progress_key_prefix + job_id for job_id in candidates)],
            args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000),
                  int(self._lease_s * 1000), room, *candidates],
        ))
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # Cancelled (shutdown) while Redis claimed: give back what it claimed, or
            # those jobs would wait out the in-progress timeout unstarted.
            claim.add_done_callback(self._give_back)
            raise
        leases: LeaseKeeper | None = self.ctx.get("leases")
        for job_id, score in zip(claimed[::2], claimed[1::2], strict=True):
            await self.sem.acquire()  # there is room: no wait
            self.job_counter += 1
            job = job_id.decode()
            task = self.loop.create_task(self.run_job(job, int(float(score))))
            if leases is not None:  # renewed from the claim on, not from the job's start
                task.add_done_callback(functools.partial(_untrack, leases, leases.track(job)))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job] = task

    def _give_back(self, claim: asyncio.Future[Any]) -> None:
        if claim.cancelled() or claim.exception() is not None:
            return
        keys = [in_progress_key_prefix + job_id.decode() for job_id in claim.result()[::2]]
        if keys:
            task = asyncio.ensure_future(self.pool.delete(*keys))
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)

    async def _poll_when_woken(self, channel: str) -> None:
        woken = asyncio.Event()  # wake-ups that come during a poll make one more poll
        poller = asyncio.create_task(self._poll_on(woken))
        try:
            while True:
                try:
                    async with self.pool.pubsub() as pubsub:
                        await pubsub.subscribe(channel)
                        async for message in pubsub.listen():
                            if message["type"] == "message":
                                woken.set()
                except Exception as exc:  # noqa: BLE001 - the periodic poll carries on
                    log.warning("worker wake-ups unavailable", error=str(exc))
                    await asyncio.sleep(1)
        finally:
            poller.cancel()

    async def _poll_on(self, woken: asyncio.Event) -> None:
        while True:
            await woken.wait()
            woken.clear()
            if not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
                continue
            try:
                await self.start_jobs(await self.pool.zrangebyscore(
                    self.queue_name, min=float("-inf"), max=timestamp_ms(), start=0,
                    num=self.queue_read_limit))
            except Exception as exc:  # noqa: BLE001 - the periodic poll retries
                log.warning("poll on wake-up failed", error=str(exc))

    async def close(self) -> None:
        if self._waker is not None:
            self._waker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._waker
        await super().close()


def create_worker(settings: Settings, *, handle_signals: bool = True) -> Worker:
    async def on_startup(ctx: dict[str, Any]) -> None:
        services = await open_services(settings)
        ctx["services"] = services
        ctx["executor"] = build_executor(services)
        ctx["leases"] = LeaseKeeper(ctx["redis"], settings.redis_url, settings.worker_lease_s)
        ctx["leases"].start()
        if settings.worker_metrics_port:
            try:
                start_http_server(settings.worker_metrics_port)
            except OSError as exc:  # the port is taken: run on, without metrics
                log.warning("worker metrics not served", port=settings.worker_metrics_port,
                            error=str(exc))
        log.info("worker ready", queue=queue_name(settings),
                 concurrency=settings.worker_concurrency)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        leases: LeaseKeeper | None = ctx.get("leases")
        if leases is not None:
            await leases.stop()
        services: Services | None = ctx.get("services")
        if services is not None:
            await services.close()

    return OrderWorker(
        functions=[execute_order_function()],
        cron_jobs=[
            cron(
                sweep_unfinished_orders,
                name="sweep_unfinished_orders",
                second=set(range(0, 60, settings.sweep_interval_s)),
                unique=True,
                run_at_startup=True,
                timeout=60,
            )
        ],
        queue_name=queue_name(settings),
        redis_settings=arq_redis_settings(settings),
        max_jobs=settings.worker_concurrency,
        keep_result=0,
        wake_channel=wake_channel(queue_name(settings)),
        lease_s=settings.worker_lease_s,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        health_check_key=f"{queue_name(settings)}:health-check",
        # SIGTERM: stop taking jobs, give those in hand this long, then cancel them (arq
        # puts a cancelled job back on the queue; the order resumes from its last status).
        job_completion_wait=settings.worker_shutdown_grace_s,
        # How often the worker looks at the queue: a new order waits half of it on average
        # before a worker picks it up (at 50 ms that was most of an order's latency with
        # latency off); an idle look is one cheap ZRANGEBYSCORE.
        poll_delay=0.01,
    )
