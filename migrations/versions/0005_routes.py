"""Routes across pools and hops: pool kinds and state on the chain, legs of transactions,
the route's execution steps on the order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pools", sa.Column("kind", sa.Text(), nullable=False,
                                     server_default="constant_product"), schema="chain")
    # Everything a non-constant-product pool (DLMM: bins, volatility) needs beyond reserves.
    op.add_column("pools", sa.Column("state", postgresql.JSONB()), schema="chain")
    # What the pool held at genesis: with every landed swap, what it must hold now.
    op.add_column("pools", sa.Column("genesis_reserve_a", sa.Numeric(39, 0)), schema="chain")
    op.add_column("pools", sa.Column("genesis_reserve_b", sa.Numeric(39, 0)), schema="chain")
    op.execute("UPDATE chain.pools SET genesis_reserve_a = reserve_a, "
               "genesis_reserve_b = reserve_b")
    op.add_column("transactions", sa.Column("legs", postgresql.JSONB()), schema="chain")
    op.add_column("orders", sa.Column("routing", postgresql.JSONB()))


def downgrade() -> None:
    op.drop_column("orders", "routing")
    op.drop_column("transactions", "legs", schema="chain")
    op.drop_column("pools", "genesis_reserve_b", schema="chain")
    op.drop_column("pools", "genesis_reserve_a", schema="chain")
    op.drop_column("pools", "state", schema="chain")
    op.drop_column("pools", "kind", schema="chain")
