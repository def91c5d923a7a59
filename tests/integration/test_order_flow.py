"""An order from HTTP to confirmed, watched over a real WebSocket."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

from tests.chain_audit import reserve_mismatches
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
    first_hops = [leg for leg in building["route"] if leg["inputToken"] == "SOL"]
    assert sum(Decimal(leg["amountIn"]) for leg in first_hops) == Decimal("2.5")
    # The route is at least as good as the best venue alone.
    best = max(Decimal(q["amountOut"]) for q in building["quotes"])
    assert Decimal(building["expectedAmountOut"]) >= best
    assert Decimal(building["priceImpactPct"]) >= 0
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


async def test_a_multi_hop_order_executes_every_hop_in_one_transaction(stack: Stack) -> None:
    # No pool trades USDT for BONK: the route goes through SOL, directly (two hops) or by
    # way of USDC too (three), whichever the pools as earlier tests left them pay best.
    order_id = await stack.submit(inputToken="USDT", outputToken="BONK", amount="150")
    order = await stack.wait_terminal(order_id)

    assert order["status"] == "confirmed"
    paths: dict[int, list[tuple[str, str]]] = {}
    for leg in order["route"]:
        paths.setdefault(leg["path"], []).append((leg["inputToken"], leg["outputToken"]))
    for hops in paths.values():
        assert 2 <= len(hops) <= 3
        assert hops[0][0] == "USDT"
        assert hops[-1] == ("SOL", "BONK")
        assert all(a[1] == b[0] for a, b in itertools.pairwise(hops))  # each hop feeds the next
    landed = await stack.services.chain.get_signature_status(order["txHash"])
    assert landed is not None
    assert landed.amount_out is not None
    assert format(Decimal(landed.amount_out).scaleb(-5).normalize(), "f") == order["amountOut"]
    assert await reserve_mismatches(stack.services.engine) == []


async def test_a_three_hop_order_executes_every_hop_in_one_transaction(stack: Stack) -> None:
    # No pool or two-hop path trades BONK for JUP: BONK -> SOL -> USDC -> JUP.
    order_id = await stack.submit(inputToken="BONK", outputToken="JUP", amount="5000000")
    order = await stack.wait_terminal(order_id)

    assert order["status"] == "confirmed"
    assert order["attempts"] == 1
    hops = [(leg["path"], leg["inputToken"], leg["outputToken"]) for leg in order["route"]]
    paths = sorted({path for path, _, _ in hops})
    assert hops == [(path, a, b) for path in paths
                    for a, b in (("BONK", "SOL"), ("SOL", "USDC"), ("USDC", "JUP"))]
    landed = await stack.services.chain.get_signature_status(order["txHash"])
    assert landed is not None
    assert landed.err is None
    assert landed.amount_out is not None
    assert format(Decimal(landed.amount_out).scaleb(-6).normalize(), "f") == order["amountOut"]
    assert Decimal(order["amountOut"]) >= Decimal(order["minAmountOut"])
    assert await reserve_mismatches(stack.services.engine) == []
