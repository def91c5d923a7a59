"""An order from HTTP to confirmed, watched over a real WebSocket."""

from __future__ import annotations

import asyncio

from tests.stack import Stack

LIFECYCLE = ["pending", "routing", "building", "submitted", "confirmed"]


async def test_order_goes_through_every_status_to_confirmed(stack: Stack) -> None:
    order_id = await stack.submit(inputToken="SOL", outputToken="USDC", amount="2.5")
    messages, code = await stack.watch(order_id)

    assert [m["status"] for m in messages] == LIFECYCLE
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]
    assert code == 1000
    assert all(m["type"] == "order.status" and m["orderId"] == order_id for m in messages)
    building, submitted, confirmed = messages[2], messages[3], messages[4]
    assert {q["venue"] for q in building["quotes"]} == {"raydium", "meteora"}
    assert building["route"][0]["amountIn"] == "2.5"
    best = max(building["quotes"], key=lambda q: float(q["amountOut"]))
    assert building["route"][0]["venue"] == best["venue"]
    assert building["expectedAmountOut"] == best["amountOut"]
    assert submitted["txHash"] == confirmed["txHash"]
    assert len(confirmed["txHash"]) in range(86, 90)  # base58 of a 64-byte signature

    order = await stack.wait_terminal(order_id)
    assert order["status"] == "confirmed"
    assert order["amountOut"] == confirmed["amountOut"]
    assert order["executionPrice"] == confirmed["executionPrice"]
    assert order["txHash"] == confirmed["txHash"]
    assert order["attempts"] == 1
    assert await stack.events(order_id) == messages


async def test_client_connecting_after_the_end_gets_full_history_then_close(
    stack: Stack,
) -> None:
    order_id = await stack.submit()
    await stack.wait_terminal(order_id)

    messages, code = await stack.watch(order_id)

    assert [m["status"] for m in messages] == LIFECYCLE
    assert code == 1000


async def test_two_watchers_of_one_order_both_get_everything(stack: Stack) -> None:
    order_id = await stack.submit(amount="0.75")
    (first, code1), (second, code2) = await asyncio.gather(
        stack.watch(order_id), stack.watch(order_id)
    )
    assert [m["seq"] for m in first] == [1, 2, 3, 4, 5]
    assert first == second
    assert code1 == code2 == 1000
