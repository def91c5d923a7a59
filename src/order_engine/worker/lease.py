"""Short, renewed leases on running jobs, so a dead worker's jobs are retried in seconds,
and a busy one keeps them.

arq marks a running job with an in-progress key that lives for the job's timeout plus 10 s;
until it expires no other worker takes the job. While a job runs we keep that key's TTL
at a few seconds and renew it: if the worker dies, the key lapses within the lease and
another worker picks the job up.

A job is claimed (worker/settings.py, CLAIM_JOBS) with its in-progress key already set
to the lease, and is tracked here from then on: a worker killed between the claim and the
job's start loses it within the lease too. The job's first renewal, at its start, is made
on the event loop, batched (see `hold`); the periodic ones run on a thread of their own,
with a Redis connection of their own. On the loop they waited their turn behind every running
order: with 200 orders in flight on a saturated worker a renewal round trip took over 2 s,
leases lapsed, other workers took over jobs that were still running, and the overlapping
runs cost retries and throughput (issue 11: 358 -> 125-189 orders/s). A thread gets the
interpreter every few milliseconds however busy the loop is. It wakes only every lease/3:
waking it for each job start cost a quarter of a saturated worker's throughput in GIL
hand-overs (542 -> 404-445 orders/s in a flood of 5,000).

Busy is not hung: the loop beats a heartbeat, and the thread renews only while the beat is
fresh (`stall_limit_s`). A worker whose loop is stuck lets its leases lapse, as a dead one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import structlog
from arq.constants import in_progress_key_prefix
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from order_engine.batching import MicroBatcher

log = structlog.get_logger(__name__)

HEARTBEAT_S = 0.5
STALL_LIMIT_S = 30.0  # far past any busy loop's delay, well within a job's timeout


class LeaseKeeper:
    def __init__(self, redis: AsyncRedis, redis_url: str, lease_s: float, *,
                 stall_limit_s: float = STALL_LIMIT_S) -> None:
        self._lease_ms = int(lease_s * 1000)
        self._loop_redis = redis
        self._first_renewals: MicroBatcher[str, None] = MicroBatcher(
            self._renew_first, key=lambda key: key, max_batch=1000)
        self._stall_limit_s = stall_limit_s
        self._redis = Redis.from_url(redis_url, socket_timeout=lease_s / 2,
                                     socket_connect_timeout=lease_s / 2)
        self._lock = threading.Lock()
        self._held: collections.Counter[str] = collections.Counter()  # key: holders
        self._stopping = threading.Event()
        self._beat = time.monotonic()
        self._thread: threading.Thread | None = None
        self._heart: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._beat = time.monotonic()
        self._heart = asyncio.create_task(self._heartbeat(), name="lease-heartbeat")
        self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._heart is not None:
            self._heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._redis.close()

    def track(self, job_id: str) -> str:
        """Renew this job's lease from now on (until `untrack` of the key returned)."""
        key = in_progress_key_prefix + job_id
        with self._lock:
            self._held[key] += 1
        return key

    def untrack(self, key: str) -> None:
        with self._lock:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    @contextlib.asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        """The lease renewed while the block runs (the worker also tracks every job it
        claims, from the claim on)."""
        key = self.track(job_id)
        try:
            # The claim set the key to the lease; a job started otherwise (a test, or a
            # key set by arq itself) has arq's whole-timeout TTL until now. Jobs that start
            # together are renewed together, and that shared round trip is worth keeping
            # even after a claim: the jobs of a poll then take their first steps together,
            # so their statements share batches. Without it a flood of 5,000 at concurrency
            # 200 ran at 300-465 orders/s over nine runs, with it 457-637 (side by side).
            await self._first_renewals.submit(key)
            yield
        finally:
            self.untrack(key)

    async def _renew_first(self, keys: list[str]) -> list[Exception | None]:
        try:
            async with self._loop_redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, self._lease_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the thread renews it within lease/3
            log.warning("job lease first renewal failed", jobs=len(keys), error=str(exc))
        return [None] * len(keys)

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)

    def _keep(self) -> None:
        stalled = False
        while not self._stopping.wait(self._lease_ms / 3000):
            stalled_s = time.monotonic() - self._beat
            if stalled_s > self._stall_limit_s:
                if not stalled:
                    log.error("worker event loop stalled; its job leases are let lapse",
                              stalled_s=round(stalled_s, 1))
                stalled = True
                continue
            stalled = False
            with self._lock:
                keys = list(self._held)
            if keys:
                self._renew(keys)

    def _renew(self, keys: list[str]) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, self._lease_ms)
                pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("job lease renewal failed", jobs=len(keys), error=str(exc))
