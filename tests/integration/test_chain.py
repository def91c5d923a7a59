"""The simulated chain: signatures land once, blockhashes expire, pools never lose updates."""

from __future__ import annotations

import asyncio

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from order_engine.domain.amm import Venue
from order_engine.domain.errors import BlockhashExpiredError, PermanentError
from order_engine.domain.tokens import SOL, USDC
from order_engine.market.chain import SLIPPAGE_ERROR, SimulatedChain
from order_engine.market.pool_codec import reserves_of
from order_engine.market.programs import RouteInstruction, RouteStep, pool_address
from order_engine.market.transactions import SignedTransaction, engine_wallet, sign_transaction
from tests.chain_audit import reserve_mismatches
from tests.stack import Stack

POOL_ID = "raydium-SOL-USDC"


async def _swap_tx(chain: SimulatedChain, amount_in: int, min_out: int = 0,
                   wallet: Keypair | None = None) -> SignedTransaction:
    wallet = wallet or engine_wallet()
    instruction = RouteInstruction(
        wallet.pubkey(), Pubkey.from_string(SOL.mint), Pubkey.from_string(USDC.mint), min_out,
        (RouteStep(0, pool_address(Venue.RAYDIUM, POOL_ID), True, amount_in),),
    ).to_instruction()
    latest = await chain.get_latest_blockhash()
    return sign_transaction(wallet, [instruction], latest.blockhash)


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
