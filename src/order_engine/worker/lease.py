"""Short, renewed leases on running jobs, so a dead worker's jobs are retried in seconds,
and a busy one keeps them.

arq marks a running job with an in-progress key that lives for the job's timeout plus 10 s;
until it expires no other worker takes the job. While a job runs we keep that key's TTL
at a few seconds and renew it: if the worker dies, the key lapses within the lease and
another worker picks the job up.

The renewals run on a thread of their own, with a Redis connection of their own, not on
the event loop. On the loop they waited their turn behind every running order: with 200
orders in flight on a saturated worker a renewal round trip took over 2 s, leases lapsed,
other workers took over jobs that were still running, and the overlapping runs cost
retries and throughput (issue 11: 358 -> 125-189 orders/s). A thread gets the interpreter
every few milliseconds however busy the loop is.

Busy is not hung: the loop beats a heartbeat, and the thread renews only while the beat is
fresh (`stall_limit_s`). A worker whose loop is stuck lets its leases lapse, as a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import structlog
from arq.constants import in_progress_key_prefix
from redis import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

HEARTBEAT_S = 0.5
STALL_LIMIT_S = 30.0  # far past any busy loop's delay, well within a job's timeout


class LeaseKeeper:
    def __init__(self, redis_url: str, lease_s: float, *,
                 stall_limit_s: float = STALL_LIMIT_S) -> None:
        self._lease_ms = int(lease_s * 1000)
        self._stall_limit_s = stall_limit_s
        self._redis = Redis.from_url(redis_url, socket_timeout=lease_s / 2,
                                     socket_connect_timeout=lease_s / 2)
        self._lock = threading.Lock()
        self._keys: set[str] = set()  # every lease held
        self._fresh: set[str] = set()  # held but not yet renewed once
        self._wake = threading.Event()
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
        self._wake.set()
        if self._heart is not None:
            self._heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._redis.close()

    @contextlib.asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        key = in_progress_key_prefix + job_id
        with self._lock:
            self._keys.add(key)
            # At once: arq set it to the whole job timeout. Jobs that start together (a
            # worker may start hundreds in one poll) are renewed together.
            self._fresh.add(key)
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._keys.discard(key)
                self._fresh.discard(key)

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)

    def _keep(self) -> None:
        next_all = time.monotonic()
        stalled = False
        while not self._stopping.is_set():
            self._wake.wait(max(0.0, next_all - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            if now - self._beat > self._stall_limit_s:
                if not stalled:
                    log.error("worker event loop stalled; its job leases are let lapse",
                              stalled_s=round(now - self._beat, 1))
                stalled = True
                next_all = now + self._lease_ms / 3000
                continue
            stalled = False
            with self._lock:
                if now >= next_all:
                    keys = list(self._keys)
                    next_all = now + self._lease_ms / 3000
                else:
                    keys = list(self._fresh)
                self._fresh.clear()
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
