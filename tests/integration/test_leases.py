"""Job leases: a busy worker keeps them, a hung or dead one loses them within the lease."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis

from order_engine.config import Settings
from order_engine.worker.lease import LeaseKeeper
from order_engine.worker.settings import JOB_TIMEOUT_S

ARQ_IN_PROGRESS_TTL_MS = (JOB_TIMEOUT_S + 10) * 1000  # what arq sets when it starts a job


async def _claimed(redis: Redis) -> str:
    """A job as arq marks it in progress: its key lives for the whole job timeout."""
    job_id = f"lease-test-{uuid.uuid4()}"
    await redis.psetex(f"arq:in-progress:{job_id}", ARQ_IN_PROGRESS_TTL_MS, "1")
    return job_id


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


async def _ttl_ms(redis: Redis, job_id: str) -> int:
    return int(await redis.pttl(f"arq:in-progress:{job_id}"))


async def test_a_worker_whose_loop_is_busy_keeps_its_leases(
        make_settings: Callable[..., Settings]) -> None:
    """The loop does nothing but CPU work for three leases' time (as a worker saturated
    with orders does): the lease is renewed all along and never lapses."""
    settings = make_settings()
    redis = Redis.from_url(settings.redis_url)
    keeper = LeaseKeeper(redis, settings.redis_url, lease_s=1.0)
    keeper.start()
    try:
        job_id = await _claimed(redis)
        async with keeper.hold(job_id):
            for _ in range(30):
                await asyncio.sleep(0.02)  # the first renewal (every lease/3) shortens it
                if await _ttl_ms(redis, job_id) <= 1000:
                    break
            assert 0 < await _ttl_ms(redis, job_id) <= 1000
            _busy(3.0)  # a saturated loop: CPU work, no await, for 3 s
            assert await _ttl_ms(redis, job_id) > 0
        await keeper.stop()
        await asyncio.sleep(1.1)
        assert await _ttl_ms(redis, job_id) == -2  # released: lapsed within the lease
    finally:
        await keeper.stop()
        await redis.aclose()


async def test_a_worker_whose_loop_is_stuck_lets_its_leases_lapse(
        make_settings: Callable[..., Settings]) -> None:
    """Stuck past the stall limit, the worker is treated as dead: another can take over."""
    settings = make_settings()
    redis = Redis.from_url(settings.redis_url)
    keeper = LeaseKeeper(redis, settings.redis_url, lease_s=1.0, stall_limit_s=1.0)
    keeper.start()
    try:
        job_id = await _claimed(redis)
        async with keeper.hold(job_id):
            await asyncio.sleep(0.2)
            _busy(3.5)  # stuck: 1 s of stall limit, then the 1 s lease runs out
            assert await _ttl_ms(redis, job_id) == -2
    finally:
        await keeper.stop()
        await redis.aclose()
