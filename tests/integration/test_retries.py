"""Transient failures are retried with back-off; attempts run out into `failed`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from order_engine.config import Settings
from tests.chain_audit import landed_count
from tests.stack import running_stack


def _at(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


async def test_transient_failures_retry_with_backoff_then_fail_with_reason(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(sim_failure_rate=1.0, max_attempts=3, retry_base_ms=100,
                             retry_max_ms=1000)
    async with running_stack(settings) as stack:
        order_id = await stack.submit()
        order = await stack.wait_terminal(order_id)
        events = await stack.events(order_id)

    assert order["status"] == "failed"
    assert order["attempts"] == 3
    assert "dropped" in order["failureReason"]
    assert "after 3 attempts" in order["failureReason"]
    assert [e["status"] for e in events] == [
        "pending",
        "routing", "building", "retrying",
        "routing", "building", "retrying",
        "routing", "building", "failed",
    ]
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert events[-1]["reason"] == order["failureReason"]
    retries = [(i, e) for i, e in enumerate(events) if e["status"] == "retrying"]
    assert [e["attempt"] for _, e in retries] == [1, 2]
    for index, retry in retries:
        assert "dropped" in retry["error"]
        # Back-off: half the window fixed, half jitter; window doubles per attempt.
        window = min(1000, 100 * 2 ** (retry["attempt"] - 1))
        assert window // 2 <= retry["retryInMs"] <= window
        waited_ms = (_at(events[index + 1]) - _at(retry)).total_seconds() * 1000
        assert waited_ms >= retry["retryInMs"] - 5  # arq deferred the job that long


async def test_flaky_submissions_still_confirm_each_order_once(
    make_settings: Callable[..., Settings],
) -> None:
    # 30% of submissions dropped, 12 attempts: all 30 orders confirm unless one is dropped
    # 12 times running (p < 1e-5), and some order needs a retry unless none is dropped at
    # all (p = 0.7^30 < 1e-4). Wide slippage: this test is about drops, not price moves.
    settings = make_settings(sim_failure_rate=0.3, max_attempts=12, retry_base_ms=5,
                             retry_max_ms=20)
    async with running_stack(settings) as stack:
        ids = await asyncio.gather(*(
            stack.submit(amount=f"0.{i + 1}", slippageBps=500) for i in range(30)
        ))
        orders = [await stack.wait_terminal(i) for i in ids]
        histories = [await stack.events(i) for i in ids]

    unconfirmed = [(o["status"], o["attempts"], o["failureReason"]) for o in orders
                   if o["status"] != "confirmed"]
    assert unconfirmed == []
    assert any(o["attempts"] > 1 for o in orders)
    signatures = [o["txHash"] for o in orders]
    assert await landed_count(stack.services.engine, signatures) == len(ids)
    for history in histories:
        assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
        assert [e["status"] for e in history].count("confirmed") == 1
