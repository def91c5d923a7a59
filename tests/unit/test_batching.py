"""MicroBatcher: what queues up while a batch is written goes together in the next one."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from order_engine.batching import MicroBatcher


class Recorder:
    """A write that takes a while, remembers its batches, and fails items < 0."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        await self.gate.wait()
        await asyncio.sleep(0.01)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_a_lone_item_is_written_at_once_and_later_ones_together() -> None:
    recorder = Recorder()
    writer = MicroBatcher(recorder.write, key=lambda i: i)

    first = asyncio.create_task(writer.submit(1))
    await asyncio.sleep(0)  # the first batch is being written
    rest = [asyncio.create_task(writer.submit(i)) for i in range(2, 7)]

    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert recorder.batches == [[1], [2, 3, 4, 5, 6]]


async def test_an_items_own_error_is_its_alone() -> None:
    writer = MicroBatcher(Recorder().write, key=lambda i: i)

    results = await asyncio.gather(*(writer.submit(i) for i in (1, -2, 3)),
                                   return_exceptions=True)

    assert results[0] == 10
    assert results[2] == 30
    assert isinstance(results[1], ValueError)


async def test_a_failed_write_fails_its_batch_only() -> None:
    calls = 0

    async def write(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return list(items)

    writer = MicroBatcher(write, key=lambda i: i)
    first = await asyncio.gather(writer.submit(1), writer.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in first)
    assert await writer.submit(3) == 3  # the writer carries on


async def test_one_key_once_per_batch_and_batches_bounded() -> None:
    recorder = Recorder()
    writer = MicroBatcher(recorder.write, key=lambda i: i % 5, max_batch=3)

    await asyncio.gather(*(writer.submit(i) for i in (1, 6, 2, 3, 4)))

    # All five queued before the first write: 6 shares 1's key, 4 finds the batch full.
    assert recorder.batches == [[1, 2, 3], [6, 4]]


async def test_a_caller_that_gives_up_is_not_written() -> None:
    recorder = Recorder()
    writer = MicroBatcher(recorder.write, key=lambda i: i)
    recorder.gate.clear()
    first = asyncio.create_task(writer.submit(1))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(writer.submit(2))
    stayer = asyncio.create_task(writer.submit(3))
    await asyncio.sleep(0)
    quitter.cancel()
    recorder.gate.set()

    assert (await first, await stayer) == (10, 30)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert recorder.batches == [[1], [3]]


async def test_a_batch_runs_outside_its_first_callers_context() -> None:
    order_id: contextvars.ContextVar[str] = contextvars.ContextVar("order_id", default="-")
    seen: list[str] = []

    async def run(items: list[int]) -> list[int | Exception]:
        seen.append(order_id.get())  # e.g. what a log line of the batch would carry
        return list(items)

    writer = MicroBatcher(run, key=lambda i: i)

    async def caller() -> int:
        order_id.set("the first caller's order")
        return await writer.submit(1)

    assert await caller() == 1
    assert seen == ["-"]


async def test_a_batch_answering_for_the_wrong_number_of_items_fails_rather_than_hangs() -> None:
    async def run(items: list[int]) -> list[int | Exception]:
        return [items[0]]

    writer = MicroBatcher(run, key=lambda i: i)
    results = await asyncio.wait_for(
        asyncio.gather(writer.submit(1), writer.submit(2), return_exceptions=True), 5)
    assert all(isinstance(r, RuntimeError) for r in results)
