"""The arq worker: settings and the one job it runs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog
from arq import Retry, cron
from arq.constants import in_progress_key_prefix
from arq.worker import Function, Worker, func
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from order_engine import metrics
from order_engine.config import Settings
from order_engine.domain.orders import OrderStatus
from order_engine.market.transactions import engine_wallet
from order_engine.services import EXECUTE_ORDER_JOB, Services, open_services, queue_name
from order_engine.services import redis_settings as arq_redis_settings
from order_engine.store.db import DATABASE_ERRORS
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
    enqueued = 0
    for order_id in stale:
        # Job id = order id: arq refuses the enqueue while a job for it is queued,
        # deferred or running, so this only revives orders nothing is working on.
        if await services.enqueue_order(str(order_id)):
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
    )


def execute_order_function() -> Function:
    return func(
        execute_order, name=EXECUTE_ORDER_JOB, max_tries=ARQ_MAX_TRIES, timeout=JOB_TIMEOUT_S
    )


class OrderWorker(Worker):
    """arq's worker, picking jobs without re-checking running ones one by one.

    A job stays in arq's queue until it finishes, so every poll reads the running jobs
    (this worker's and the others') again at the head of the queue, and arq checks each
    with a WATCH transaction of several round trips before skipping it. With hundreds of
    orders in flight, that was most of a worker's CPU. Here this worker's own jobs are
    skipped from memory, and the others' in one pipelined round trip; arq's transaction
    still guards every claim, so no job is started twice.
    """

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        candidates = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        if not candidates:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in candidates:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            running = await pipe.execute()
        await super().start_jobs(
            [job_id for job_id, busy in zip(candidates, running, strict=True) if not busy])


def create_worker(settings: Settings, *, handle_signals: bool = True) -> Worker:
    async def on_startup(ctx: dict[str, Any]) -> None:
        services = await open_services(settings)
        ctx["services"] = services
        ctx["executor"] = build_executor(services)
        ctx["leases"] = LeaseKeeper(ctx["redis"], settings.worker_lease_s)
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
