"""Orders, their events and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNITS = sa.Numeric(39, 0)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("key_prefix", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "orders",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("api_key_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("api_keys.id", name="fk_orders_api_key_id_api_keys"),
                  nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("input_mint", sa.Text(), nullable=False),
        sa.Column("output_mint", sa.Text(), nullable=False),
        sa.Column("amount_in", UNITS, nullable=False),
        sa.Column("slippage_bps", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("quotes", postgresql.JSONB()),
        sa.Column("route", postgresql.JSONB()),
        sa.Column("expected_amount_out", UNITS),
        sa.Column("min_amount_out", UNITS),
        sa.Column("amount_out", UNITS),
        sa.Column("execution_price", sa.Text()),
        sa.Column("tx_signature", sa.Text()),
        sa.Column("tx_bytes", sa.LargeBinary()),
        sa.Column("tx_last_valid_slot", sa.BigInteger()),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("last_seq", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'routing', 'building', 'submitted', 'confirmed', "
            "'retrying', 'failed')", name="ck_orders_status"),
        sa.CheckConstraint("amount_in > 0", name="ck_orders_amount_positive"),
    )
    op.create_index("ix_orders_key_created", "orders",
                    ["api_key_id", sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("ix_orders_unfinished", "orders", ["updated_at"],
                    postgresql_where=sa.text("status NOT IN ('confirmed', 'failed')"))
    op.create_table(
        "order_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("order_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("orders.id", ondelete="CASCADE",
                                name="fk_order_events_order_id_orders"),
                  nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("order_id", "seq", name="uq_order_events_order_seq"),
        sa.CheckConstraint("seq >= 1", name="ck_order_events_seq_positive"),
    )


def downgrade() -> None:
    op.drop_table("order_events")
    op.drop_index("ix_orders_unfinished", table_name="orders")
    op.drop_index("ix_orders_key_created", table_name="orders")
    op.drop_table("orders")
    op.drop_table("api_keys")
