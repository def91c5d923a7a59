"""Live order events over Redis pub/sub.

PostgreSQL is the record; pub/sub only makes events fast. Every event is published after
its commit, and a subscriber that suspects it missed one (a gap in `seq`, a reconnect, a
full queue, a quiet period) reads the missing ones back from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from order_engine.store.repository import EventRecord

log = structlog.get_logger(__name__)


def events_channel(prefix: str) -> str:
    return f"{prefix}:events"


def event_envelope(event: EventRecord) -> bytes:
    """What goes on the channel: the event and whose it is (for the firehose)."""
    return orjson.dumps({"apiKeyId": str(event.api_key_id), "event": event.to_message()})


class EventPublisher:
    """Publishes committed events. The events published while a round trip to Redis is in
    flight go together in the next one (one pipelined round trip for many): a worker
    running many orders publishes a few events per order, and a round trip each was a
    large share of its CPU. First in, first out, so an order's events keep their order.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._channel = events_channel(prefix)
        self._pending: list[tuple[EventRecord, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, event: EventRecord) -> None:
        """Best effort: the event is already committed; readers recover a lost publish.
        Returns once the event was handed to Redis (or that failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="event-publisher")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event, _ in batch:
                        pipe.publish(self._channel, event_envelope(event))
                    await asyncio.wait_for(pipe.execute(), 2)
            except (RedisError, OSError, TimeoutError) as exc:
                first = batch[0][0]
                log.warning("event publish failed", events=len(batch),
                            order_id=str(first.order_id), seq=first.seq, error=str(exc))
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """An event as it arrived, with its JSON text made once for every reader."""

    message: dict[str, Any]
    text: str


# Put on a subscription's queue when it may have missed events: the reader resyncs.
RESYNC = LiveEvent({"type": "resync"}, '{"type":"resync"}')


class Subscription:
    """Events of one order, or (firehose) of every order of one API key."""

    def __init__(self, hub: EventHub, order_id: uuid.UUID, maxsize: int,
                 api_key_id: uuid.UUID | None = None) -> None:
        self._hub = hub
        self.order_id = order_id
        self.api_key_id = api_key_id
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize)

    def deliver(self, message: LiveEvent) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A slow reader never holds up the hub: drop what it cannot take and let it
            # read the rest from PostgreSQL.
            self._drain()
            self.queue.put_nowait(RESYNC)

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    """One Redis subscription per process, fanned out to any number of local readers."""

    def __init__(self, redis: Redis, prefix: str, queue_size: int = 256) -> None:
        self._redis = redis
        self._channel = events_channel(prefix)
        self._queue_size = queue_size
        self._by_order: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._by_key: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def subscribe(self, order_id: uuid.UUID) -> Subscription:
        sub = Subscription(self, order_id, self._queue_size)
        self._by_order[order_id].add(sub)
        return sub

    def subscribe_key(self, api_key_id: uuid.UUID, queue_size: int = 4096) -> Subscription:
        """Every event of every order of the key (dashboards)."""
        sub = Subscription(self, uuid.UUID(int=0), queue_size, api_key_id)
        self._by_key[api_key_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        index = self._by_key if sub.api_key_id is not None else self._by_order
        key = sub.api_key_id if sub.api_key_id is not None else sub.order_id
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_order.values()) + sum(
            len(s) for s in self._by_key.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self.connected.set()
                self._resync_all()  # anything published while we were away
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message["data"])
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("event hub lost redis; reconnecting", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, data: bytes) -> None:
        try:
            envelope = orjson.loads(data)
            message = envelope["event"]
            order_id = uuid.UUID(message["orderId"])
            api_key_id = uuid.UUID(envelope["apiKeyId"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            log.warning("ignoring malformed event message")
            return
        readers = (*self._by_order.get(order_id, ()), *self._by_key.get(api_key_id, ()))
        if readers:
            live = LiveEvent(message, orjson.dumps(message).decode())  # once, for all
            for sub in readers:
                sub.deliver(live)

    def _resync_all(self) -> None:
        for index in (self._by_order, self._by_key):
            for subs in index.values():
                for sub in subs:
                    sub.deliver(RESYNC)
