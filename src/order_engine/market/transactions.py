"""Building and signing swap transactions (solders): the signature is the txHash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    signature: str
    raw: bytes


def engine_wallet(seed: str = "order-engine-simulated-wallet") -> Keypair:
    """The simulated trading wallet: the same keypair in every process."""
    return Keypair.from_seed(hashlib.sha256(seed.encode()).digest())


def sign_transaction(payer: Keypair, instructions: list[Instruction], blockhash: Hash) -> (
    SignedTransaction
):
    message = Message.new_with_blockhash(instructions, payer.pubkey(), blockhash)
    tx = Transaction([payer], message, blockhash)
    return SignedTransaction(signature=str(tx.signatures[0]), raw=bytes(tx))
