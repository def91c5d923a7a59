"""The simulated chain's own schema: pools, blockhashes, transactions, genesis.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "chain"
UNITS = sa.Numeric(39, 0)


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.create_table(
        "genesis",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seed", sa.Text(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "pools",
        sa.Column("pool_id", sa.Text(), primary_key=True),
        sa.Column("address", sa.Text(), nullable=False, unique=True),
        sa.Column("venue", sa.Text(), nullable=False),
        sa.Column("mint_a", sa.Text(), nullable=False),
        sa.Column("mint_b", sa.Text(), nullable=False),
        sa.Column("reserve_a", UNITS, nullable=False),
        sa.Column("reserve_b", UNITS, nullable=False),
        sa.Column("fee_numerator", sa.Integer(), nullable=False),
        sa.Column("fee_denominator", sa.Integer(), nullable=False),
        sa.Column("fee_rounding", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("reserve_a >= 0 AND reserve_b >= 0", name="ck_pools_reserves"),
        schema=SCHEMA,
    )
    op.create_table(
        "blockhashes",
        sa.Column("blockhash", sa.Text(), primary_key=True),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("last_valid_slot", sa.BigInteger(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "transactions",
        sa.Column("signature", sa.Text(), primary_key=True),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("blockhash", sa.Text(), nullable=False),
        sa.Column("pool_id", sa.Text(), sa.ForeignKey(f"{SCHEMA}.pools.pool_id"),
                  nullable=False),
        sa.Column("input_mint", sa.Text(), nullable=False),
        sa.Column("amount_in", UNITS, nullable=False),
        sa.Column("min_amount_out", UNITS, nullable=False),
        sa.Column("amount_out", UNITS),
        sa.Column("err", sa.Text()),
        sa.Column("landed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_chain_transactions_pool", "transactions", ["pool_id"], schema=SCHEMA)


def downgrade() -> None:
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
