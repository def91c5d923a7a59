"""A short, renewed lease on a running job, so a dead worker's job is retried in seconds.

arq marks a running job with an in-progress key that lives for the job's timeout plus 10 s;
until it expires no other worker takes the job. While the job runs we keep that key's TTL
at a few seconds and renew it: if the worker dies, the key lapses within the lease and
another worker picks the job up. If the worker is merely slow to renew (Redis stalled),
two runs may overlap, which the pipeline is built to survive.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import structlog
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)


class JobLease:
    def __init__(self, redis: Redis, job_id: str, lease_s: float) -> None:
        self._redis = redis
        self._key = in_progress_key_prefix + job_id
        self._lease_ms = int(lease_s * 1000)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> JobLease:
        await self._renew()
        self._task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            await self._renew()

    async def _renew(self) -> None:
        try:
            await asyncio.wait_for(self._redis.pexpire(self._key, self._lease_ms), 1)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("job lease renewal failed", key=self._key, error=str(exc))
