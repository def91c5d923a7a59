"""The simulated chain: signatures land once, blockhashes expire, pools never lose updates."""

from __future__ import annotations

import asyncio

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from order_engine.domain.amm import Venue
from order_engine.domain.errors import BlockhashExpiredError, PermanentError
from order_engine.domain.tokens import SOL, USDC
from order_engine.market.chain import SLIPPAGE_ERROR, SimulatedChain
from order_engine.market.pool_codec import reserves_of
from order_engine.market.programs import (
    RouteInstruction,
    RouteStep,
    memo_instruction,
    pool_address,
)
from order_engine.market.transactions import SignedTransaction, engine_wallet, sign_transaction
from tests.chain_audit import reserve_mismatches
from tests.stack import Stack

POOL_ID = "raydium-SOL-USDC"


async def _swap_tx(chain: SimulatedChain, amount_in: int, min_out: int = 0,
                   wallet: Keypair | None = None,
                   blockhash: Hash | None = None) -> SignedTransaction:
    wallet = wallet or engine_wallet()
    instruction = RouteInstruction(
        wallet.pubkey(), Pubkey.from_string(SOL.mint), Pubkey.from_string(USDC.mint), min_out,
        (RouteStep(0, pool_address(Venue.RAYDIUM, POOL_ID), True, amount_in),),
    ).to_instruction()
    if blockhash is None:
        blockhash = (await chain.get_latest_blockhash()).blockhash
    return sign_transaction(wallet, [instruction], blockhash)


async def _reserves(chain: SimulatedChain) -> tuple[int, int]:
    pool = next(p for p in await chain.get_pools() if p.pool_id == POOL_ID)
    return reserves_of(pool)


async def test_a_signature_is_applied_once_however_often_it_is_sent(stack: Stack) -> None:
    chain = stack.services.chain
    tx = await _swap_tx(chain, 123_456_789)
    before = await _reserves(chain)

    await asyncio.gather(*(chain.send_transaction(tx.raw) for _ in range(5)))

    status = await chain.get_signature_status(tx.signature)
    assert status is not None
    assert status.err is None
    assert status.amount_out
    after = await _reserves(chain)
    assert after == (before[0] + 123_456_789, before[1] - status.amount_out)


async def test_output_below_minimum_lands_as_slippage_error_and_moves_nothing(
    stack: Stack,
) -> None:
    chain = stack.services.chain
    before = await _reserves(chain)
    tx = await _swap_tx(chain, 10**9, min_out=10**15)

    await chain.send_transaction(tx.raw)

    status = await chain.get_signature_status(tx.signature)
    assert status is not None
    assert status.err == SLIPPAGE_ERROR
    assert await _reserves(chain) == before


async def test_expired_blockhash_is_refused(stack: Stack) -> None:
    chain = stack.services.chain
    stale = SimulatedChain(stack.services.engine, stack.services.pg, latency_scale=0)
    tx = await _swap_tx(chain, 10**9)
    stale.slot_seconds = chain.slot_seconds / 1000  # its clock runs 150 slots ahead at once
    with pytest.raises(BlockhashExpiredError):
        await stale.send_transaction(tx.raw)
    assert await chain.get_signature_status(tx.signature) is None


async def test_tampered_or_unsigned_transactions_are_refused(stack: Stack) -> None:
    chain = stack.services.chain
    tx = await _swap_tx(chain, 10**9)
    tampered = bytearray(tx.raw)
    tampered[-1] ^= 0xFF  # flips a byte of the instruction data (the amount)
    with pytest.raises(PermanentError):
        await chain.send_transaction(bytes(tampered))
    parsed = Transaction.from_bytes(tx.raw)
    unsigned = Transaction.new_unsigned(parsed.message)
    with pytest.raises(PermanentError):
        await chain.send_transaction(bytes(unsigned))


async def test_concurrent_swaps_on_one_pool_lose_no_update(stack: Stack) -> None:
    chain = stack.services.chain
    txs = [await _swap_tx(chain, 10**8 + i) for i in range(40)]
    await asyncio.gather(*(chain.send_transaction(tx.raw) for tx in txs))
    assert await reserve_mismatches(stack.services.engine) == []


async def _blocks_that_wrote(stack: Stack, signatures: list[str]) -> int:
    """How many database transactions recorded these swaps (rows written together share
    their xmin)."""
    return int(await stack.services.pg.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM chain.transactions "
        "WHERE signature = ANY($1::text[])", signatures))


async def test_swaps_sent_together_land_in_blocks_in_the_order_sent(stack: Stack) -> None:
    chain = stack.services.chain
    txs = [await _swap_tx(chain, 10**8 * (i + 1)) for i in range(30)]

    signatures = await asyncio.gather(*(chain.send_transaction(tx.raw) for tx in txs))

    assert signatures == [tx.signature for tx in txs]
    assert await _blocks_that_wrote(stack, signatures) <= 3  # not 30 commits
    rows = await stack.services.pg.fetch(
        "SELECT signature, xmin::text AS block, amount_in, amount_out FROM chain.transactions "
        "WHERE signature = ANY($1::text[]) AND err IS NULL", signatures)
    assert len(rows) == 30
    # Within a block (nobody else can swap in between), applied in the order sent: each
    # input buys less of the pool than the one before.
    sent = {signature: i for i, signature in enumerate(signatures)}
    blocks: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        blocks.setdefault(row["block"], []).append(
            (sent[row["signature"]], row["amount_out"] / row["amount_in"]))
    for block in blocks.values():
        rates = [rate for _, rate in sorted(block)]
        assert rates == sorted(rates, reverse=True)
    assert await reserve_mismatches(stack.services.engine) == []


async def test_a_bad_swap_in_a_block_fails_alone(stack: Stack) -> None:
    chain = stack.services.chain
    good = [await _swap_tx(chain, 10**8 + i) for i in range(6)]
    too_greedy = await _swap_tx(chain, 10**8, min_out=10**15)  # lands, as a slippage error
    expired = await _swap_tx(chain, 10**8 + 99, blockhash=Hash.new_unique())  # unknown
    sent = [*good[:3], too_greedy, expired, *good[3:]]

    results = await asyncio.gather(*(chain.send_transaction(tx.raw) for tx in sent),
                                   return_exceptions=True)

    assert isinstance(results[4], BlockhashExpiredError)
    assert [r for i, r in enumerate(results) if i != 4] == [
        tx.signature for i, tx in enumerate(sent) if i != 4]
    greedy = await chain.get_signature_status(too_greedy.signature)
    assert greedy is not None
    assert greedy.err == SLIPPAGE_ERROR
    for tx in good:
        status = await chain.get_signature_status(tx.signature)
        assert status is not None
        assert status.err is None
    assert await reserve_mismatches(stack.services.engine) == []


async def test_a_swap_postgresql_refuses_fails_alone_and_the_rest_of_its_block_lands(
    stack: Stack,
) -> None:
    chain = stack.services.chain
    wallet = engine_wallet()
    latest = await chain.get_latest_blockhash()
    route = RouteInstruction(
        wallet.pubkey(), Pubkey.from_string(SOL.mint), Pubkey.from_string(USDC.mint), 0,
        (RouteStep(0, pool_address(Venue.RAYDIUM, POOL_ID), True, 10**8),),
    ).to_instruction()
    # A memo PostgreSQL cannot store as text (U+0000): the block's statement fails.
    nul_memo = memo_instruction("a\u0000b", wallet.pubkey())
    refused = sign_transaction(wallet, [nul_memo, route], latest.blockhash)
    good = [await _swap_tx(chain, 10**8 + i) for i in range(5)]

    results = await asyncio.gather(
        *(chain.send_transaction(tx.raw) for tx in [*good[:2], refused, *good[2:]]),
        return_exceptions=True)

    assert isinstance(results[2], Exception)
    assert [results[i] for i in (0, 1, 3, 4, 5)] == [tx.signature for tx in good]
    assert await chain.get_signature_status(refused.signature) is None
    assert await reserve_mismatches(stack.services.engine) == []
