"""Micro-batching: calls made while a batch is in flight go together in the next one.

Used where many coroutines of one process each need a round trip to PostgreSQL: a worker
holds hundreds of orders at once. For writes it is a group commit (with
`synchronous_commit` on, each commit waits for a WAL flush); for reads, one query
instead of many. There is no added delay: a lone call goes at once, alone; a batch is
whatever queued up while the previous one was in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

class MicroBatcher(Generic[T, R]):
    """`await submit(item)` returns the item's result from `run_batch(batch)`, which takes
    up to `max_batch` items, never two with the same `key` (the second waits for the next
    batch and sees what the first did), and returns for each, in order, its result or the
    exception that is that item's alone. An exception raised by `run_batch` itself is every
    item's of the batch."""

    def __init__(self, run_batch: Callable[[list[T]], Awaitable[list[R | Exception]]],
                 key: Callable[[T], Hashable], max_batch: int = 256) -> None:
        self._run_batch = run_batch
        self._key = key
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None:
            # A context of its own: not the first caller's (its log fields, e.g. order_id).
            self._runner = asyncio.create_task(self._run_while_pending(),
                                               context=contextvars.Context())
        return await future

    async def _run_while_pending(self) -> None:
        try:
            while batch := self._take_batch():
                try:
                    outcomes = await self._run_batch([item for item, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} items")
                except Exception as exc:  # noqa: BLE001 - the batch's callers get it
                    outcomes = [exc] * len(batch)
                except BaseException:  # cancelled: the loop is going away
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller gave up meanwhile
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._runner = None
            for _, future in self._pending:  # only left behind when cancelled
                future.cancel()
            self._pending.clear()

    def _take_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """Up to max_batch pending items, each key at most once, oldest first; items
        whose caller has given up are dropped."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        rest: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._pending:
            item, future = entry
            if future.done():
                continue
            key = self._key(item)
            if len(batch) < self._max_batch and key not in keys:
                keys.add(key)
                batch.append(entry)
            else:
                rest.append(entry)
        self._pending = rest
        return batch
