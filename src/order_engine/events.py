"""Live order events over Redis pub/sub.

PostgreSQL is the record; pub/sub only makes events fast. Every event is published after
its commit, and a subscriber that suspects it missed one (a gap in `seq`, a reconnect, a
full queue, a quiet period) reads the missing ones back from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from order_engine.store.repository import EventRecord

log = structlog.get_logger(__name__)


def events_channel(prefix: str) -> str:
    return f"{prefix}:events"


def keys_channel(prefix: str) -> str:
    """Where revocations of API keys are announced to every API process."""
    return f"{prefix}:keys"


async def publish_revoked(redis: Redis, prefix: str, key_ids: Iterable[uuid.UUID]) -> int:
    """Tell every API process that these keys were revoked (already, in PostgreSQL): they
    drop them from their caches and close their sockets. Returns how many processes
    heard it."""
    message = orjson.dumps({"revoked": [str(key_id) for key_id in key_ids]})
    return int(await redis.publish(keys_channel(prefix), message))


class KeyListener(Protocol):
    def keys_revoked(self, key_ids: set[uuid.UUID]) -> None: ...
    def reconnected(self) -> None: ...


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


# Put on a subscription when it may have missed events: the reader resyncs.
RESYNC = LiveEvent({"type": "resync"}, '{"type":"resync"}')


class Ended(enum.Enum):
    """Why a subscription's reader must stop."""

    CLIENT_GONE = "client gone"
    SHUTDOWN = "server shutting down"
    KEY_REVOKED = "API key revoked"


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """Events of one order, or (firehose) of every order of one API key, for one reader.

    Not an asyncio.Queue: at 10,000 sockets its three deques per socket are most of an
    idle socket's cost. The hub appends to a list and wakes the reader's one waiter; the
    reader takes everything pending at once. `end()` wakes it too (client gone, server
    shutting down), so a reader needs no task of its own watching for those.
    """

    __slots__ = ("_hub", "_maxsize", "_pending", "_waiter", "api_key_id", "ended",
                 "order_id", "owner", "seen_seq")

    def __init__(self, hub: EventHub, order_id: uuid.UUID, maxsize: int,
                 api_key_id: uuid.UUID | None = None, owner: uuid.UUID | None = None) -> None:
        self._hub = hub
        self.order_id = order_id
        self.api_key_id = api_key_id
        # The key of the reader: its revocation ends the subscription.
        self.owner = owner if owner is not None else api_key_id
        self._maxsize = maxsize
        self._pending: list[LiveEvent] = []
        self._waiter: asyncio.Future[None] | None = None
        self.ended: Ended | None = None
        # The highest seq the reader has passed on (per-order readers): the hub's
        # recheck resyncs a reader behind the record.
        self.seen_seq = 0

    def deliver(self, live: LiveEvent) -> None:
        if self.ended is not None:
            return
        if len(self._pending) >= self._maxsize:
            # A slow reader never holds up the hub: drop what it cannot take and let it
            # read the rest from PostgreSQL.
            self._pending = [RESYNC]
        else:
            self._pending.append(live)
        self._notify()

    def end(self, reason: Ended) -> None:
        """Stop the reader: `wait()` returns at once from now on, and nothing more is
        queued. The first reason wins."""
        if self.ended is None:
            self.ended = reason
        self._notify()

    def take(self) -> list[LiveEvent]:
        """Everything delivered since the last take, oldest first (without waiting)."""
        batch, self._pending = self._pending, []
        return batch

    async def wait(self, timeout: float | None = None) -> list[LiveEvent]:
        """Like `take()`, but waits up to `timeout` while nothing is pending. Empty when
        it timed out, or when the subscription has ended."""
        if not self._pending and self.ended is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return self.take()

    def _notify(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)

    def close(self) -> None:
        self._hub.unsubscribe(self)


# The latest seq in the record of each of these orders (those it knows).
SeqLookup = Callable[[list[uuid.UUID]], Awaitable[Mapping[uuid.UUID, int]]]
RECHECK_BATCH = 1000


class EventHub:
    """One Redis subscription per process, fanned out to any number of local readers."""

    def __init__(self, redis: Redis, prefix: str, queue_size: int = 256) -> None:
        self._redis = redis
        self._channel = events_channel(prefix)
        self._keys_channel = keys_channel(prefix)
        self._queue_size = queue_size
        # Told of key revocations, and of reconnects (when some may have been missed).
        self.key_listener: KeyListener | None = None
        self._by_order: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._by_key: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._recheck_task: asyncio.Task[None] | None = None
        self._live_orders: set[uuid.UUID] = set()  # had an event since the last recheck
        self._recheck_everything = asyncio.Event()  # set after a Redis reconnect
        self._shutting_down = False
        self.connected = asyncio.Event()

    def subscribe(self, order_id: uuid.UUID, owner: uuid.UUID | None = None) -> Subscription:
        return self._add(self._by_order, order_id,
                         Subscription(self, order_id, self._queue_size, owner=owner))

    def subscribe_key(self, api_key_id: uuid.UUID, queue_size: int = 4096) -> Subscription:
        """Every event of every order of the key (dashboards)."""
        return self._add(self._by_key, api_key_id,
                         Subscription(self, uuid.UUID(int=0), queue_size, api_key_id))

    def _add(self, index: dict[uuid.UUID, set[Subscription]], key: uuid.UUID,
             sub: Subscription) -> Subscription:
        index[key].add(sub)
        self._count += 1
        if self._shutting_down:
            sub.end(Ended.SHUTDOWN)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        index = self._by_key if sub.api_key_id is not None else self._by_order
        key = sub.api_key_id if sub.api_key_id is not None else sub.order_id
        subs = index.get(key)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del index[key]

    @property
    def subscriber_count(self) -> int:
        return self._count

    def _subscriptions(self) -> Iterator[Subscription]:
        for index in (self._by_order, self._by_key):
            for subs in index.values():
                yield from subs

    def end_keys(self, key_ids: set[uuid.UUID]) -> int:
        """These keys were revoked: end their readers' subscriptions. Returns how many."""
        ended = [sub for sub in self._subscriptions() if sub.owner in key_ids]
        for sub in ended:
            sub.end(Ended.KEY_REVOKED)
        return len(ended)

    def subscribed_keys(self) -> set[uuid.UUID]:
        return {sub.owner for sub in self._subscriptions() if sub.owner is not None}

    def end_all(self) -> None:
        """Server shutdown: end every subscription, and every one made from now on."""
        self._shutting_down = True
        for sub in self._subscriptions():
            sub.end(Ended.SHUTDOWN)

    def recheck_with(self, latest_seqs: SeqLookup, every_s: float) -> None:
        """Every `every_s`, compare the latest seq in the record of each watched order
        that had no live event meanwhile with what its readers have seen, and resync
        those behind: a publish lost while the hub stayed connected leaves no gap to
        notice. One query for all the quiet orders, rather than one per reader. After a
        Redis reconnect, every watched order at once, rather than every reader reading
        its order's events (10,000 queries for 10,000 watchers). Started once; later
        calls do nothing."""
        if self._recheck_task is None:
            self._recheck_task = asyncio.create_task(
                self._recheck(latest_seqs, every_s), name="event-hub-recheck")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 5)

    async def stop(self) -> None:
        for task in (self._task, self._recheck_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel, self._keys_channel)
                self.connected.set()
                self._resync_all()  # anything published while we were away
                if self.key_listener is not None:
                    self.key_listener.reconnected()
                backoff = 0.1
                keys_channel = self._keys_channel.encode()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["channel"] in (keys_channel, self._keys_channel):
                        self._on_keys(message["data"])
                    else:
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
        by_order = self._by_order.get(order_id, ())
        if by_order:
            self._live_orders.add(order_id)
        readers = (*by_order, *self._by_key.get(api_key_id, ()))
        if readers:
            live = LiveEvent(message, orjson.dumps(message).decode())  # once, for all
            for sub in readers:
                sub.deliver(live)

    def _on_keys(self, data: bytes) -> None:
        try:
            revoked = {uuid.UUID(key_id) for key_id in orjson.loads(data)["revoked"]}
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            log.warning("ignoring malformed key message")
            return
        if self.key_listener is not None and revoked:
            self.key_listener.keys_revoked(revoked)

    def _resync_all(self) -> None:
        """After a (re)connect: whatever was published meanwhile is lost. Firehose readers
        are told to resync; per-order readers too, unless the recheck can find, in one
        query, which of them are behind."""
        indexes = [self._by_key]
        if self._recheck_task is not None:
            self._recheck_everything.set()
        else:
            indexes.append(self._by_order)
        for index in indexes:
            for subs in index.values():
                for sub in subs:
                    sub.deliver(RESYNC)

    async def _recheck(self, latest_seqs: SeqLookup, every_s: float) -> None:
        everything = False  # a round after a reconnect failed: do it again
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await self._recheck_everything.wait()
            everything = everything or self._recheck_everything.is_set()
            self._recheck_everything.clear()
            orders = [o for o in self._by_order if everything or o not in self._live_orders]
            self._live_orders.clear()
            done = await self._recheck_round(latest_seqs, orders)
            everything = everything and not done

    async def _recheck_round(self, latest_seqs: SeqLookup, orders: list[uuid.UUID]) -> bool:
        for start in range(0, len(orders), RECHECK_BATCH):
            try:
                latest = await latest_seqs(orders[start:start + RECHECK_BATCH])
            except Exception as exc:  # noqa: BLE001 - whatever the record raised, retry next round
                log.warning("event recheck failed", error=str(exc))
                return False
            for order_id, seq in latest.items():
                for sub in self._by_order.get(order_id, ()):
                    if 0 < sub.seen_seq < seq:  # 0: still reading its history
                        sub.deliver(RESYNC)
        return True
