"""The on-chain programs' addresses and the swap instruction they take."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from order_engine.domain.amm import Venue

PROGRAM_IDS: dict[Venue, Pubkey] = {
    # Raydium AMM v4 (constant product).
    Venue.RAYDIUM: Pubkey.from_string("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"),
    # Meteora Dynamic AMM pools.
    Venue.METEORA: Pubkey.from_string("Eo7WjKq67rjJQSZxS6z3YkapzY3eMj6Xy8X5EQVn5UaB"),
}
VENUE_BY_PROGRAM = {program: venue for venue, program in PROGRAM_IDS.items()}

# SPL Memo: the engine tags every transaction with its order id and attempt. Two orders
# with the same pool, amounts and blockhash would otherwise be byte-identical, so the same
# signature, and the chain would (rightly) apply only one of them.
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


def memo_instruction(text: str, signer: Pubkey) -> Instruction:
    return Instruction(MEMO_PROGRAM_ID, text.encode(),
                       [AccountMeta(signer, is_signer=True, is_writable=False)])


# Raydium AMM v4 numbers its swap-base-in instruction 9; we use that layout for both
# simulated programs: tag u8, amount_in u64, minimum_amount_out u64 (little endian).
SWAP_BASE_IN = 9
_SWAP_LAYOUT = struct.Struct("<BQQ")
U64_MAX = 2**64 - 1


def pool_address(venue: Venue, pool_id: str) -> Pubkey:
    return Pubkey.find_program_address([b"pool", pool_id.encode()], PROGRAM_IDS[venue])[0]


@dataclass(frozen=True, slots=True)
class SwapInstruction:
    venue: Venue
    pool: Pubkey
    input_mint: Pubkey
    output_mint: Pubkey
    owner: Pubkey
    amount_in: int
    min_amount_out: int

    def to_instruction(self) -> Instruction:
        if not (0 < self.amount_in <= U64_MAX and 0 <= self.min_amount_out <= U64_MAX):
            raise ValueError("swap amounts must fit in u64")
        return Instruction(
            PROGRAM_IDS[self.venue],
            _SWAP_LAYOUT.pack(SWAP_BASE_IN, self.amount_in, self.min_amount_out),
            [
                AccountMeta(self.pool, is_signer=False, is_writable=True),
                AccountMeta(self.input_mint, is_signer=False, is_writable=False),
                AccountMeta(self.output_mint, is_signer=False, is_writable=False),
                AccountMeta(self.owner, is_signer=True, is_writable=True),
            ],
        )


class MalformedInstructionError(ValueError):
    pass


def decode_swap(program: Pubkey, accounts: list[Pubkey], data: bytes) -> SwapInstruction:
    venue = VENUE_BY_PROGRAM.get(program)
    if venue is None:
        raise MalformedInstructionError(f"unknown program {program}")
    if len(data) != _SWAP_LAYOUT.size or len(accounts) != 4:
        raise MalformedInstructionError("not a swap instruction")
    tag, amount_in, min_out = _SWAP_LAYOUT.unpack(data)
    if tag != SWAP_BASE_IN:
        raise MalformedInstructionError(f"unsupported instruction {tag}")
    pool, input_mint, output_mint, owner = accounts
    return SwapInstruction(venue, pool, input_mint, output_mint, owner, amount_in, min_out)
