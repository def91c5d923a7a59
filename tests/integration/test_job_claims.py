"""Workers claim jobs in one round trip per poll: however many workers poll one queue,
each job starts once, only when due, and no worker holds more than its room."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Callable
from typing import Any

from arq import create_pool
from arq.worker import func

from order_engine.config import Settings
from order_engine.domain.orders import OrderType
from order_engine.domain.tokens import SOL, USDC
from order_engine.services import queue_name, redis_settings
from order_engine.store.repository import NewOrder
from order_engine.store.submissions import wake_channel
from order_engine.worker.settings import OrderWorker
from tests.stack import Stack, stop_worker


async def test_competing_workers_start_each_due_job_once_within_their_room(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    queue = f"{settings.redis_prefix}:claims"
    runs: collections.Counter[str] = collections.Counter()
    running: dict[str, int] = collections.defaultdict(int)
    most: dict[str, int] = collections.defaultdict(int)

    async def job(ctx: dict[str, Any], n: int) -> None:
        worker = ctx["worker_name"]
        running[worker] += 1
        most[worker] = max(most[worker], running[worker])
        runs[ctx["job_id"]] += 1
        await asyncio.sleep(0.005)
        running[worker] -= 1

    pool = await create_pool(redis_settings(settings), default_queue_name=queue)
    job_ids: list[str] = []
    try:
        jobs = [await pool.enqueue_job("job", n) for n in range(300)]
        job_ids += [job.job_id for job in jobs if job is not None]

        def worker(name: str) -> OrderWorker:
            async def on_startup(ctx: dict[str, Any]) -> None:
                ctx["worker_name"] = name

            return OrderWorker(functions=[func(job, name="job")], queue_name=queue,
                               redis_settings=redis_settings(settings), burst=True,
                               max_jobs=20, poll_delay=0.001, on_startup=on_startup,
                               handle_signals=False)

        workers = [worker(f"w{i}") for i in range(3)]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.async_run() for w in workers)), 60)
        finally:
            for w in workers:
                await w.close()

        # A job deferred to later is not claimed before it is due.
        later = await pool.enqueue_job("job", -1, _defer_by=60)
        assert later is not None
        job_ids.append(later.job_id)
        early = OrderWorker(functions=[func(job, name="job")], queue_name=queue,
                            redis_pool=pool, handle_signals=False)
        await early.start_jobs([later.job_id.encode()])
        assert early.tasks == {}
        assert not await pool.exists(f"arq:in-progress:{later.job_id}")
    finally:
        await pool.delete(queue, *(f"arq:{kind}:{job_id}" for job_id in job_ids
                                   for kind in ("job", "result", "in-progress")))
        await pool.aclose()

    assert sorted(runs) == sorted(job_ids[:300])
    assert set(runs.values()) == {1}
    assert all(0 < held <= 20 for held in most.values())
    assert len(most) == 3  # all three took a share


async def test_an_enqueue_wakes_an_idle_worker_before_its_next_poll(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    queue = f"{settings.redis_prefix}:wake-test"
    started = asyncio.Event()

    async def job(ctx: dict[str, Any]) -> None:
        started.set()

    pool = await create_pool(redis_settings(settings), default_queue_name=queue)
    worker = OrderWorker(functions=[func(job, name="job")], queue_name=queue,
                         redis_settings=redis_settings(settings), poll_delay=60,
                         wake_channel=wake_channel(queue), handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    try:
        await asyncio.sleep(1)  # its first look at the queue is over; the next in 60 s
        enqueued = await pool.enqueue_job("job")
        assert enqueued is not None
        await pool.publish(wake_channel(queue), 1)
        await asyncio.wait_for(started.wait(), 10)  # woken, not polled
    finally:
        await stop_worker(worker, running)
        await pool.delete(queue)
        await pool.aclose()


async def test_submissions_and_re_enqueues_publish_a_wake_up(stack: Stack) -> None:
    services = stack.services
    async with services.redis.pubsub() as pubsub:
        await pubsub.subscribe(wake_channel(queue_name(stack.settings)))
        await stack.submit()  # the API's batched enqueue
        assert await _next_message(pubsub) is not None
        key_id = await services.api_keys.lookup(services.settings.bootstrap_api_key)
        assert key_id is not None
        order, _ = await services.orders.create(  # committed, not enqueued
            NewOrder(key_id, OrderType.MARKET, SOL.mint, USDC.mint, 10**9, 50))
        assert await services.enqueue_order(str(order.id))  # as the sweep does
        assert await _next_message(pubsub) is not None


async def _next_message(pubsub: Any) -> Any:
    async with asyncio.timeout(5):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                return message


async def test_a_claimed_order_job_is_leased_from_the_claim_and_a_cron_job_is_not(
    make_settings: Callable[..., Settings],
) -> None:
    """A worker killed between claiming an order's job and starting it loses the job
    within the lease (its key is set to the lease by the claim itself), not after arq's
    whole job timeout; cron jobs (`name:time` ids) keep arq's timeout."""
    settings = make_settings()
    queue = f"{settings.redis_prefix}:leased-claims"
    order_job, cron_job = str(uuid.uuid4()), "sweep_unfinished_orders:1700000000000"
    pool = await create_pool(redis_settings(settings), default_queue_name=queue)
    try:
        for job_id in (order_job, cron_job):
            assert await pool.enqueue_job("job", _job_id=job_id) is not None
        worker = OrderWorker(functions=[func(_never_ends, name="job", timeout=120)],
                             queue_name=queue, redis_pool=pool, handle_signals=False,
                             lease_s=2.0)
        await worker.start_jobs([order_job.encode(), cron_job.encode()])
        assert set(worker.tasks) == {order_job, cron_job}
        assert 0 < await pool.pttl(f"arq:in-progress:{order_job}") <= 2000
        assert await pool.pttl(f"arq:in-progress:{cron_job}") > 100_000
        for task in worker.tasks.values():
            task.cancel()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    finally:
        await pool.delete(queue, *(f"arq:{kind}:{job_id}" for job_id in (order_job, cron_job)
                                   for kind in ("job", "result", "in-progress", "retry")))
        await pool.aclose()


async def _never_ends(ctx: dict[str, Any]) -> None:
    await asyncio.Event().wait()
