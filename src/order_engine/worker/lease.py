"""Short, renewed leases on running jobs, so a dead worker's jobs are retried in seconds.

arq marks a running job with an in-progress key that lives for the job's timeout plus 10 s;
until it expires no other worker takes the job. While a job runs we keep that key's TTL
at a few seconds and renew it: if the worker dies, the key lapses within the lease and
another worker picks the job up. If the worker is merely slow to renew (Redis stalled),
two runs may overlap, which the pipeline is built to survive.

One keeper per worker renews every lease it holds in a single pipelined round trip, so
the cost does not grow with the number of orders in flight; the first renewals of jobs
that start together go together too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from order_engine.batching import MicroBatcher

log = structlog.get_logger(__name__)


class LeaseKeeper:
    def __init__(self, redis: Redis, lease_s: float) -> None:
        self._redis = redis
        self._lease_ms = int(lease_s * 1000)
        self._keys: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._first_renewals: MicroBatcher[str, None] = MicroBatcher(
            self._renew_first, key=lambda key: key, max_batch=1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name="lease-keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        key = in_progress_key_prefix + job_id
        self._keys.add(key)
        try:
            # At once: arq set it to the whole job timeout. Jobs started together (a
            # worker may start hundreds in one poll) are renewed together.
            await self._first_renewals.submit(key)
            yield
        finally:
            self._keys.discard(key)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if self._keys:
                await self._renew(list(self._keys))

    async def _renew_first(self, keys: list[str]) -> list[Exception | None]:
        await self._renew(keys)
        return [None] * len(keys)

    async def _renew(self, keys: list[str]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, self._lease_ms)
                await asyncio.wait_for(pipe.execute(), 2)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("job lease renewal failed", jobs=len(keys), error=str(exc))
