"""Wiring: the connections and components a process (API or worker) runs with."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import asyncpg
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from order_engine.config import Settings
from order_engine.events import EventPublisher
from order_engine.market.chain import SimulatedChain
from order_engine.market.venues import SimulatedVenue, venues_for
from order_engine.store.api_keys import ApiKeyStore
from order_engine.store.db import create_engine, create_pg_pool, session_factory
from order_engine.store.repository import OrderRepository
from order_engine.store.submissions import wake_channel

EXECUTE_ORDER_JOB = "execute_order"


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}:queue"


def redis_settings(settings: Settings) -> RedisSettings:
    rs = RedisSettings.from_dsn(settings.redis_url)
    rs.conn_timeout = 5
    return rs


class MissingSettingError(RuntimeError):
    pass


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    pg: asyncpg.Pool
    sessions: async_sessionmaker[AsyncSession]
    orders: OrderRepository
    api_keys: ApiKeyStore
    redis: Redis
    queue: ArqRedis
    publisher: EventPublisher
    chain: SimulatedChain
    venues: list[SimulatedVenue]
    rng: random.Random

    async def enqueue_order(self, order_id: str) -> bool:
        """Queue the order's job; False when a job for this order is queued or running."""
        job = await self.queue.enqueue_job(EXECUTE_ORDER_JOB, order_id, _job_id=order_id)
        if job is not None:
            with contextlib.suppress(RedisError, OSError):  # the poll finds it anyway
                await self.queue.publish(wake_channel(queue_name(self.settings)), 1)
        return job is not None

    async def close(self) -> None:
        await self.queue.aclose()
        await self.redis.aclose()
        await self.engine.dispose()
        await self.pg.close()


async def open_services(settings: Settings) -> Services:
    if not settings.database_url or not settings.redis_url:
        raise MissingSettingError(
            "DATABASE_URL and REDIS_URL must be set (or use `order-engine up`, which "
            "starts embedded servers when they are not)"
        )
    engine = create_engine(settings.database_url, settings.db_pool_size)
    sessions = session_factory(engine)
    pg = await create_pg_pool(settings.database_url, settings.db_pool_size)
    redis = Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=5,
        health_check_interval=15,
    )
    queue = await create_pool(redis_settings(settings), default_queue_name=queue_name(settings))
    rng = random.Random(settings.sim_seed)
    chain = SimulatedChain(
        engine,
        pg,
        latency_scale=settings.sim_latency_scale,
        failure_rate=settings.sim_failure_rate,
        rng=rng,
    )
    return Services(
        settings=settings,
        engine=engine,
        pg=pg,
        sessions=sessions,
        orders=OrderRepository(sessions, pg, settings.max_key_exposure),
        api_keys=ApiKeyStore(sessions),
        redis=redis,
        queue=queue,
        publisher=EventPublisher(redis, settings.redis_prefix),
        chain=chain,
        venues=venues_for(chain, rng),
        rng=rng,
    )
