"""The chain records each transaction's memo (as explorers index it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("memo", sa.Text()), schema="chain")
    op.create_index("ix_chain_transactions_memo", "transactions", ["memo"], schema="chain")


def downgrade() -> None:
    op.drop_index("ix_chain_transactions_memo", table_name="transactions", schema="chain")
    op.drop_column("transactions", "memo", schema="chain")
