"""The on-chain programs' addresses and the instructions they take."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from order_engine.domain.amm import Venue

PROGRAM_IDS: dict[Venue, Pubkey] = {
    # Raydium AMM v4 (constant product).
    Venue.RAYDIUM: Pubkey.from_string("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"),
    # Meteora DLMM (liquidity book).
    Venue.METEORA: Pubkey.from_string("LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo"),
}
VENUE_BY_PROGRAM = {program: venue for venue, program in PROGRAM_IDS.items()}

# SPL Memo: the engine tags every transaction with its order id and attempt. Two orders
# with the same pool, amounts and blockhash would otherwise be byte-identical, so the same
# signature, and the chain would (rightly) apply only one of them.
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


def memo_instruction(text: str, signer: Pubkey) -> Instruction:
    return Instruction(MEMO_PROGRAM_ID, text.encode(),
                       [AccountMeta(signer, is_signer=True, is_writable=False)])


# The aggregator program executes a whole route in one instruction, as Jupiter's does:
# every step swaps exactly its amount (or, for a later hop, all that the previous hop of
# its path produced), and the sum of the paths' outputs must reach minimum_amount_out or
# the whole transaction fails.
AGGREGATOR_PROGRAM_ID = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
ROUTE_TAG = 1
_ROUTE_HEAD = struct.Struct("<BQB")  # tag, minimum_amount_out, number of steps
_ROUTE_STEP = struct.Struct("<BBBQ")  # path, pool account index, a_to_b, amount_in (0=carry)
U64_MAX = 2**64 - 1
FIXED_ACCOUNTS = 3  # owner, input mint, output mint; then the pools


def pool_address(venue: Venue, pool_id: str) -> Pubkey:
    return Pubkey.find_program_address([b"pool", pool_id.encode()], PROGRAM_IDS[venue])[0]


@dataclass(frozen=True, slots=True)
class RouteStep:
    path: int
    pool: Pubkey
    a_to_b: bool  # sells the pool's token A (else token B)
    amount_in: int  # 0: all that the previous step of this path produced


@dataclass(frozen=True, slots=True)
class RouteInstruction:
    owner: Pubkey
    input_mint: Pubkey
    output_mint: Pubkey
    min_amount_out: int
    steps: tuple[RouteStep, ...]

    def to_instruction(self) -> Instruction:
        if not 0 <= self.min_amount_out <= U64_MAX or not 0 < len(self.steps) < 256:
            raise ValueError("route out of range")
        pools = list(dict.fromkeys(step.pool for step in self.steps))
        data = _ROUTE_HEAD.pack(ROUTE_TAG, self.min_amount_out, len(self.steps))
        for step in self.steps:
            if not 0 <= step.amount_in <= U64_MAX:
                raise ValueError("swap amounts must fit in u64")
            data += _ROUTE_STEP.pack(step.path, FIXED_ACCOUNTS + pools.index(step.pool),
                                     int(step.a_to_b), step.amount_in)
        accounts = [
            AccountMeta(self.owner, is_signer=True, is_writable=True),
            AccountMeta(self.input_mint, is_signer=False, is_writable=False),
            AccountMeta(self.output_mint, is_signer=False, is_writable=False),
            *(AccountMeta(pool, is_signer=False, is_writable=True) for pool in pools),
        ]
        return Instruction(AGGREGATOR_PROGRAM_ID, data, accounts)


class MalformedInstructionError(ValueError):
    pass


def decode_route(program: Pubkey, accounts: list[Pubkey], data: bytes) -> RouteInstruction:
    if program != AGGREGATOR_PROGRAM_ID:
        raise MalformedInstructionError(f"unknown program {program}")
    try:
        tag, min_out, count = _ROUTE_HEAD.unpack_from(data)
        if tag != ROUTE_TAG or len(data) != _ROUTE_HEAD.size + count * _ROUTE_STEP.size:
            raise MalformedInstructionError("not a route instruction")
        steps = []
        for i in range(count):
            path, index, a_to_b, amount_in = _ROUTE_STEP.unpack_from(
                data, _ROUTE_HEAD.size + i * _ROUTE_STEP.size
            )
            if not FIXED_ACCOUNTS <= index < len(accounts):
                raise MalformedInstructionError("pool account index out of range")
            steps.append(RouteStep(path, accounts[index], bool(a_to_b), amount_in))
        owner, input_mint, output_mint = accounts[:FIXED_ACCOUNTS]
    except (struct.error, ValueError) as exc:
        raise MalformedInstructionError(f"not a route instruction: {exc}") from exc
    return RouteInstruction(owner, input_mint, output_mint, min_out, tuple(steps))
