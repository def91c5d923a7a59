"""The engine's tables. They are created only by the alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class BaseUnits(TypeDecorator[int]):
    """Integer base units as NUMERIC(39, 0): far past u64 and any token supply."""

    impl = Numeric(39, 0)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)

    def process_result_value(self, value: object, dialect: Dialect) -> int | None:
        return None if value is None else int(value)  # type: ignore[call-overload]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # sha256 of the key: keys are long random tokens, so a fast hash is enough and a
    # leaked table gives nobody a usable key.
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    key_prefix: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Made from BOOTSTRAP_API_KEY: revoked when the setting names another key (or none).
    bootstrap: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id")
    )
    type: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    input_mint: Mapped[str] = mapped_column(Text)
    output_mint: Mapped[str] = mapped_column(Text)
    amount_in: Mapped[int] = mapped_column(BaseUnits())
    slippage_bps: Mapped[int] = mapped_column(Integer)
    # The most price impact the order accepts (bps); NULL on orders from before the
    # limit existed, which are held to the workers' MAX_PRICE_IMPACT_BPS.
    max_price_impact_bps: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    quotes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    route: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # The route as it executes (steps, pools, directions) and its summary (impact...).
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    expected_amount_out: Mapped[int | None] = mapped_column(BaseUnits())
    min_amount_out: Mapped[int | None] = mapped_column(BaseUnits())
    amount_out: Mapped[int | None] = mapped_column(BaseUnits())
    execution_price: Mapped[str | None] = mapped_column(Text)
    # The signed transaction, kept before it is sent so a re-run can ask the chain
    # about this very signature (and resend these very bytes) instead of trading twice.
    tx_signature: Mapped[str | None] = mapped_column(Text)
    tx_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    tx_last_valid_slot: Mapped[int | None] = mapped_column(BigInteger)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    last_seq: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_orders_key_created", "api_key_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_orders_unfinished",
            "updated_at",
            postgresql_where=text("status NOT IN ('confirmed', 'failed')"),
        ),
        # Pages filtered by status, and a key's in-flight counts.
        Index("ix_orders_key_status_created", "api_key_id", "status", text("created_at DESC"),
              text("id DESC")),
        # A key's finished orders by when they finished: /api/stats' window.
        Index(
            "ix_orders_key_finished",
            "api_key_id",
            "updated_at",
            postgresql_where=text("status IN ('confirmed', 'failed')"),
        ),
    )


class OrderEvent(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("order_id", "seq", name="uq_order_events_order_seq"),)


class IdempotencyKey(Base):
    """A submission's Idempotency-Key: the same key and body replay the first answer."""

    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
