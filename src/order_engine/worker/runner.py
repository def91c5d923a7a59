"""`order-engine worker`: an arq worker that outlives Redis outages.

arq's worker stops when its Redis connection fails. Here it is restarted with back-off
until Redis answers again; jobs in hand run to completion first (they need PostgreSQL,
not Redis). SIGTERM / SIGINT stop it for good, after the shutdown grace period.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
import uvloop
from redis.exceptions import RedisError

from order_engine.config import Settings
from order_engine.worker.settings import create_worker

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 5.0


async def _run_once(settings: Settings) -> bool:
    """Run one arq worker until it stops; True when it stopped because of a signal."""
    worker = create_worker(settings)
    stopped_by_signal = False

    def on_stop(signum: object) -> None:
        nonlocal stopped_by_signal
        stopped_by_signal = True

    worker.on_stop = on_stop
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass  # a signal cancels the main task
    except (RedisError, OSError) as exc:
        log.error("worker lost redis; restarting", error=str(exc))
    finally:
        # Let the jobs in hand finish (they checkpoint in PostgreSQL), then release.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.close(), settings.worker_shutdown_grace_s + 5)
    return stopped_by_signal


def run_worker(settings: Settings) -> None:
    # uvloop: its event loop and socket I/O in C cost the worker less CPU per order.
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    backoff = 0.5
    try:
        while not loop.run_until_complete(_run_once(settings)):
            loop.run_until_complete(asyncio.sleep(backoff))
            backoff = min(backoff * 2, MAX_BACKOFF_S)
    finally:
        loop.close()
