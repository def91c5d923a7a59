"""The simulated chain's own schema: pools, issued blockhashes, landed transactions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

CHAIN_SCHEMA = "chain"

metadata = MetaData(schema=CHAIN_SCHEMA)

pools = Table(
    "pools",
    metadata,
    Column("pool_id", Text, primary_key=True),
    Column("address", Text, nullable=False, unique=True),
    Column("venue", Text, nullable=False),
    Column("mint_a", Text, nullable=False),
    Column("mint_b", Text, nullable=False),
    Column("reserve_a", Numeric(39, 0), nullable=False),
    Column("reserve_b", Numeric(39, 0), nullable=False),
    Column("fee_numerator", Integer, nullable=False),
    Column("fee_denominator", Integer, nullable=False),
    Column("fee_rounding", Text, nullable=False),
    Column("kind", Text, nullable=False, server_default="constant_product"),
    Column("state", JSONB),
    Column("genesis_reserve_a", Numeric(39, 0)),
    Column("genesis_reserve_b", Numeric(39, 0)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

blockhashes = Table(
    "blockhashes",
    metadata,
    Column("blockhash", Text, primary_key=True),
    Column("slot", BigInteger, nullable=False),
    Column("last_valid_slot", BigInteger, nullable=False),
)

transactions = Table(
    "transactions",
    metadata,
    Column("signature", Text, primary_key=True),
    Column("slot", BigInteger, nullable=False),
    Column("blockhash", Text, nullable=False),
    Column("pool_id", Text, nullable=False),
    Column("input_mint", Text, nullable=False),
    Column("amount_in", Numeric(39, 0), nullable=False),
    Column("min_amount_out", Numeric(39, 0), nullable=False),
    # Null when the transaction landed with an error (it paid its fee, changed no pool).
    Column("amount_out", Numeric(39, 0)),
    Column("err", Text),
    Column("memo", Text),
    Column("legs", JSONB),
    Column("landed_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True), nullable=False),
)

# One row: when slot 0 was, so every process computes the same current slot.
genesis = Table(
    "genesis",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seed", Text, nullable=False),
)
