"""Reads whose cost does not grow with a key's history: a key's orders by status (pages
filtered by status, the in-flight counts of /api/stats) and its finished orders by when
they finished (/api/stats' window).

Built CONCURRENTLY: on a table of millions of orders a plain CREATE INDEX would hold off
every submission and status change for as long as it takes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_key_status_created", "orders",
            ["api_key_id", "status", sa.text("created_at DESC"), sa.text("id DESC")],
            postgresql_concurrently=True, if_not_exists=True)
        op.create_index(
            "ix_orders_key_finished", "orders", ["api_key_id", "updated_at"],
            postgresql_where=sa.text("status IN ('confirmed', 'failed')"),
            postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_orders_key_finished", table_name="orders",
                      postgresql_concurrently=True, if_exists=True)
        op.drop_index("ix_orders_key_status_created", table_name="orders",
                      postgresql_concurrently=True, if_exists=True)
