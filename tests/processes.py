"""Starting the real `order-engine` processes for tests, and stopping them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from order_engine.config import Settings

_ENV_OF = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "redis_prefix": "REDIS_PREFIX",
    "port": "PORT",
    "bootstrap_api_key": "BOOTSTRAP_API_KEY",
    "sim_latency_scale": "SIM_LATENCY_SCALE",
    "sim_failure_rate": "SIM_FAILURE_RATE",
    "worker_concurrency": "WORKER_CONCURRENCY",
    "max_attempts": "MAX_ATTEMPTS",
    "retry_base_ms": "RETRY_BASE_MS",
    "retry_max_ms": "RETRY_MAX_MS",
    "log_level": "LOG_LEVEL",
    "worker_lease_s": "WORKER_LEASE_S",
    "sweep_interval_s": "SWEEP_INTERVAL_S",
    "sweep_stale_s": "SWEEP_STALE_S",
    "worker_metrics_port": "WORKER_METRICS_PORT",
    "rate_limit_orders": "RATE_LIMIT_ORDERS",
    "rate_limit_quotes": "RATE_LIMIT_QUOTES",
    "rate_limit_reads": "RATE_LIMIT_READS",
    "rate_limit_anonymous": "RATE_LIMIT_ANONYMOUS",
    "max_websockets_per_key": "MAX_WEBSOCKETS_PER_KEY",
    "max_firehoses_per_key": "MAX_FIREHOSES_PER_KEY",
    "refusal_delay_s": "REFUSAL_DELAY_S",
}


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_OF.values()}
    for field, var in _ENV_OF.items():
        env[var] = str(getattr(settings, field))
    return env


@contextmanager
def processes(settings: Settings, *commands: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run `order-engine <command>` for each command; SIGTERM them all on the way out."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "order_engine.cli", command],
                         env=env_for(settings))
        for command in commands
    ]
    try:
        yield procs
    finally:
        terminate(procs)


def terminate(procs: list[subprocess.Popen[bytes]], grace_s: float = 30) -> None:
    """SIGTERM all, wait for them, SIGKILL whatever outstays the grace period."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        proc.send_signal(signal.SIGTERM)
    for proc in live:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_for_status(http: httpx.AsyncClient, order_id: str, wanted: set[str],
                          timeout: float = 30) -> str:
    """Poll the order until its status is one of `wanted`; returns it."""
    async with asyncio.timeout(timeout):
        while True:
            status = str((await http.get(f"/api/orders/{order_id}")).json()["status"])
            if status in wanted:
                return status
            await asyncio.sleep(0.05)


def wait_until_ready(base_url: str, procs: list[subprocess.Popen[bytes]],
                     timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"process exited early: {dead}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base_url} not ready after {timeout}s")
