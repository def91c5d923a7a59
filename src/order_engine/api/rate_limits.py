"""Per-key rate limits, counted in Redis so that every API process shares them.

The counting is the `limits` library's sliding-window counter (one Lua script per hit,
O(1) memory per key and window). A limit is a setting in that library's notation
(`RATE_LIMIT_ORDERS=100/second`, or several: `10/second;600/minute`); an empty setting
is no limit.

Requests of one key and policy that arrive in one turn of the event loop are counted
together, one hit of cost N: a key submitting thousands of orders a second costs a Redis
round trip per batch, not per order, and no request waits for another's round trip.
When a batch does not fit, the window's remaining quota is taken and the rest of the
batch refused, oldest first.

A refusal is a 429 problem with `Retry-After` and the IETF RateLimit fields
(draft-ietf-httpapi-ratelimit-headers-09: `RateLimit-Policy: "orders";q=100;w=1` and
`RateLimit: "orders";r=0;t=1`); every rate-limited answer carries `RateLimit-Policy`.

If Redis does not answer, requests are let through (and a warning logged), and for the
next UNCHECKED_AFTER_FAILURE_S no request waits on it: a limit protects the service, and
a Redis blip must not refuse, or hold up, orders PostgreSQL can take.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass

import structlog
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from order_engine.api.problems import ProblemError
from order_engine.config import Settings, parse_limits

log = structlog.get_logger(__name__)
UNCHECKED_AFTER_FAILURE_S = 5.0


class Policy:
    """One kind of request's limits, e.g. orders: `100/second`."""

    __slots__ = ("header", "header_fields", "items", "name", "setting", "whose")

    def __init__(self, name: str, setting: str, items: tuple[RateLimitItem, ...],
                 whose: str = "this API key's") -> None:
        self.name = name
        self.setting = setting  # the environment variable that sets it, named in refusals
        self.items = items
        self.whose = whose  # what it counts, for refusals
        self.header = ", ".join(f'"{self.item_id(i)}";q={item.amount};w={item.get_expiry()}'
                                for i, item in enumerate(items))
        """The `RateLimit-Policy` field value."""
        # What a request under this policy is answered with (none when it has no limit).
        self.header_fields = [(b"ratelimit-policy", self.header.encode())] if items else []

    def item_id(self, index: int) -> str:
        """The name a limit goes by in the RateLimit fields: the policy's own for its
        first limit, with the window for the others ("orders", "orders-60s")."""
        return self.name if index == 0 else f"{self.name}-{self.items[index].get_expiry()}s"


@dataclass(frozen=True, slots=True)
class Refusal:
    policy: Policy
    index: int  # which of its limits is spent
    reset_in_s: int  # until a request would fit again (at least 1)

    def problem(self) -> ProblemError:
        item = self.policy.items[self.index]
        limit = f"{item.amount} per {item.get_expiry()} s"
        return ProblemError(
            429, "Too many requests",
            f"{self.policy.whose} {self.policy.name} rate limit ({limit}, "
            f"{self.policy.setting}) is spent; retry in {self.reset_in_s} s",
            type_="rate-limited",
            headers={
                "Retry-After": str(self.reset_in_s),
                "RateLimit-Policy": self.policy.header,
                "RateLimit": f'"{self.policy.item_id(self.index)}";r=0;t={self.reset_in_s}',
            })


class RateLimiter:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self._pool = ConnectionPool.from_url(redis_url, socket_timeout=2,
                                             socket_connect_timeout=2)
        self._storage = RedisStorage("async+redis://", implementation="redispy",
                                     key_prefix=f"{prefix}:ratelimit",
                                     # typed as str | float | bool, passed to redis-py
                                     connection_pool=self._pool)  # type: ignore[arg-type]
        self._strategy = SlidingWindowCounterRateLimiter(self._storage)
        self._waiting: dict[tuple[str, uuid.UUID | str],
                            list[asyncio.Future[Refusal | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unchecked_until = 0.0  # time.monotonic(): Redis failed, do not wait on it

    async def close(self) -> None:
        await self._pool.aclose()

    async def check(self, policy: Policy, key_id: uuid.UUID | str) -> Refusal | None:
        """None if this request of the key (or client address) fits its policy (and
        counts it), else why not."""
        if not policy.items or time.monotonic() < self._unchecked_until:
            return None
        future: asyncio.Future[Refusal | None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get((policy.name, key_id))
        if waiting is None:
            # The task starts on the loop's next turn: the requests of the key that arrive
            # until then go in its one hit.
            waiting = self._waiting[(policy.name, key_id)] = []
            task = asyncio.create_task(self._run(policy, key_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiting.append(future)
        return await future

    async def _run(self, policy: Policy, key_id: uuid.UUID | str) -> None:
        batch = self._waiting.pop((policy.name, key_id))
        try:
            admitted, refusal = await self._hit(policy, str(key_id), len(batch))
        except Exception as exc:  # noqa: BLE001 - let them through (module docstring)
            if time.monotonic() >= self._unchecked_until:
                log.warning("rate limits not checked: Redis did not answer",
                            unchecked_for_s=UNCHECKED_AFTER_FAILURE_S,
                            error=f"{type(exc).__name__}: {exc}")
            self._unchecked_until = time.monotonic() + UNCHECKED_AFTER_FAILURE_S
            admitted, refusal = len(batch), None
        except BaseException:  # cancelled: the loop is going away
            for future in batch:
                future.cancel()
            raise
        for index, future in enumerate(batch):
            if not future.done():  # its client may have gone meanwhile
                future.set_result(None if index < admitted else refusal)

    async def _hit(self, policy: Policy, key: str, count: int) -> tuple[int, Refusal | None]:
        """How many of `count` requests fit every limit of the policy (they are counted),
        and for the rest, the refusal. Requests a later limit refuses stay counted by the
        earlier ones, a little conservatively, as a lone request refused by it would."""
        admitted, refusal = count, None
        for index, item in enumerate(policy.items):
            if await self._strategy.hit(item, key, cost=admitted):
                continue
            stats = await self._strategy.get_window_stats(item, key)
            fits = min(admitted, stats.remaining)
            if fits and not await self._strategy.hit(item, key, cost=fits):
                fits = 0  # another process took them meanwhile
            reset_in = max(1, math.ceil(stats.reset_time - time.time()))
            if refusal is None or reset_in > refusal.reset_in_s:
                refusal = Refusal(policy, index, reset_in)
            admitted = fits
            if not admitted:
                break
        return admitted, refusal


@dataclass(frozen=True, slots=True)
class Policies:
    """Which policy a request counts against."""

    orders: Policy
    quotes: Policy
    reads: Policy
    anonymous: Policy  # per client address, for what needs no key (/healthz, /metrics...)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            Policy("orders", "RATE_LIMIT_ORDERS", parse_limits(settings.rate_limit_orders)),
            Policy("quotes", "RATE_LIMIT_QUOTES", parse_limits(settings.rate_limit_quotes)),
            Policy("reads", "RATE_LIMIT_READS", parse_limits(settings.rate_limit_reads)),
            Policy("anonymous", "RATE_LIMIT_ANONYMOUS",
                   parse_limits(settings.rate_limit_anonymous), "this client address's"))

    def of(self, method: str, path: str) -> Policy:
        if method in ("GET", "HEAD"):
            return self.quotes if path == "/api/quote" else self.reads
        return self.orders  # every write is an order or acts on one


# A socket's slot: held until released, or until its API process stops renewing it (the
# process died) for SLOT_TTL_MS. Times are Redis's clock, the one all processes share.
_ACQUIRE_SLOT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RENEW_SLOTS = """
local now = redis.call('TIME')
local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""
SLOT_TTL_MS = 60_000
SLOT_RENEW_S = 20.0


class SocketSlots:
    """How many WebSockets a key holds open, over every API process: a sorted set per key
    in Redis of its sockets' slots, each with an expiry that its process renews while the
    socket lives. A concurrency limit, which the `limits` library does not count."""

    def __init__(self, redis: Redis, prefix: str, kind: str, limit: int,
                 setting: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:{kind}-slots"
        self.limit = limit
        self.setting = setting  # the environment variable that sets the limit
        self._acquire = redis.register_script(_ACQUIRE_SLOT)
        self._renew = redis.register_script(_RENEW_SLOTS)
        self._process = uuid.uuid4().hex[:12]
        self._count = 0
        self._held: dict[uuid.UUID, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, key_id: uuid.UUID) -> str:
        return f"{self._prefix}:{key_id}"

    async def acquire(self, key_id: uuid.UUID) -> str | None:
        """A slot for one more socket of the key, or None if it holds `limit` already."""
        self._count += 1
        slot = f"{self._process}:{self._count}"
        if not await self._acquire([self._key(key_id)], [self.limit, slot, SLOT_TTL_MS]):
            return None
        self._held.setdefault(key_id, set()).add(slot)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_while_held())
        return slot

    async def release(self, key_id: uuid.UUID, slot: str) -> None:
        held = self._held.get(key_id)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._held[key_id]
        try:
            await self._redis.zrem(self._key(key_id), slot)
        except (RedisError, OSError) as exc:  # not renewed any more: it expires
            log.warning("WebSocket slot not released", error=f"{type(exc).__name__}: {exc}")

    async def _renew_while_held(self) -> None:
        try:
            while self._held:
                await asyncio.sleep(SLOT_RENEW_S)
                for key_id, slots in list(self._held.items()):
                    try:
                        await self._renew([self._key(key_id)], [SLOT_TTL_MS, *slots])
                    except (RedisError, OSError) as exc:  # the next round tries again
                        log.warning("WebSocket slots not renewed",
                                    error=f"{type(exc).__name__}: {exc}")
        finally:
            self._renewer = None

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
