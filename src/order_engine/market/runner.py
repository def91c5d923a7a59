"""`order-engine market`: the market simulator as a process of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal

from order_engine.config import Settings
from order_engine.market.chain import SimulatedChain
from order_engine.market.config import load_market_config
from order_engine.market.simulator import MarketSimulator
from order_engine.store.db import create_engine, create_pg_pool


async def run_market(settings: Settings, seed: int | None = None) -> None:
    config = load_market_config()
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    engine = create_engine(settings.database_url, pool_size=2)
    pg = await create_pg_pool(settings.database_url, size=2)
    # The market's own chain client: its trades are never dropped by the simulated RPC.
    chain = SimulatedChain(engine, pg, latency_scale=settings.sim_latency_scale,
                           rng=random.Random(config.seed))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await MarketSimulator(chain, config).run(stop)
    finally:
        await engine.dispose()
        await pg.close()
