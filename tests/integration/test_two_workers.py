"""200 concurrent orders, two worker processes: each confirmed exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from decimal import Decimal

from order_engine.config import Settings
from tests.chain_audit import landed_count, reserve_mismatches
from tests.processes import processes
from tests.stack import running_stack

PAIRS = [("SOL", "USDC", "0.5"), ("USDC", "SOL", "80"), ("SOL", "USDT", "0.3"),
         ("USDC", "USDT", "120"), ("BONK", "SOL", "2500000"), ("JUP", "USDC", "40"),
         ("USDT", "SOL", "60")]


async def test_200_orders_across_two_worker_processes_confirm_exactly_once(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(worker_concurrency=25)
    rng = random.Random(2)
    async with running_stack(settings, workers=0) as stack:
        with processes(stack.settings, "worker", "worker"):
            semaphore = asyncio.Semaphore(50)

            async def one(i: int) -> str:
                token_in, token_out, size = rng.choice(PAIRS)
                async with semaphore:
                    # Wide slippage: this test is about exactly-once, not price moves.
                    return await stack.submit(inputToken=token_in, outputToken=token_out,
                                              slippageBps=500,
                                              amount=str(Decimal(size) + Decimal(i).scaleb(-4)))

            ids = await asyncio.gather(*(one(i) for i in range(200)))
            orders = [await stack.wait_terminal(order_id, timeout=120) for order_id in ids]
            histories = [await stack.events(order_id) for order_id in ids]

    assert len(set(ids)) == 200
    assert [o["status"] for o in orders] == ["confirmed"] * 200
    assert await landed_count(stack.services.engine, [o["txHash"] for o in orders]) == 200
    for history in histories:
        assert [e["status"] for e in history] == [
            "pending", "routing", "building", "submitted", "confirmed"
        ]
    assert await reserve_mismatches(stack.services.engine) == []
