"""A key's exposure: the input of its unfinished orders, per input token, and its limit.

Each key may hold at most MAX_KEY_EXPOSURE token units of each input token in orders not
yet confirmed or failed (the same units as MAX_ORDER_AMOUNT: the simplest rule that needs
no price, so a submission costs no quote and no price lookup). The sum is kept in
`key_exposure` (migration 0008): a submission adds its amount in the statement that stores
the order, only while the sum stays within the limit; a trigger takes it off in the
transaction that finishes the order. Concurrent submissions of one key, from any API
process, queue on the key's row for that token (PostgreSQL re-checks the condition on the
row as the previous one left it), so the limit holds without a lock of our own.
"""

from __future__ import annotations

import functools
import uuid
from decimal import Decimal

from order_engine.domain.amounts import format_amount
from order_engine.domain.tokens import token_by_mint

ENSURE_ROWS_SQL = (
    "INSERT INTO key_exposure (api_key_id, input_mint) "
    "SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT DO NOTHING")

# One order (the Idempotency-Key path), in one round trip: create the key's row for the
# token or add to it, only while the sum stays within the limit (ON CONFLICT locks the row
# and checks the condition on it as the previous submission left it); no row returned:
# refused.
RESERVE_ONE_SQL = (
    "INSERT INTO key_exposure (api_key_id, input_mint, open_amount) "
    "SELECT CAST(:key AS uuid), CAST(:mint AS text), CAST(:amount AS numeric) "
    "WHERE CAST(:amount AS numeric) <= CAST(:limit AS numeric) "
    "ON CONFLICT (api_key_id, input_mint) DO UPDATE "
    "SET open_amount = key_exposure.open_amount + excluded.open_amount "
    "WHERE key_exposure.open_amount + excluded.open_amount <= CAST(:limit AS numeric) "
    "RETURNING open_amount")
OPEN_ONE_SQL = (
    "SELECT open_amount FROM key_exposure WHERE api_key_id = :key AND input_mint = :mint")


@functools.cache
def limit_units(limit: Decimal, mint: str) -> int:
    """MAX_KEY_EXPOSURE (token units) in the token's base units, rounded down."""
    return int(limit.scaleb(token_by_mint(mint).decimals))


class ExposureLimitError(Exception):
    """The order would take its key's unfinished orders in this token over the limit."""

    def __init__(self, api_key_id: uuid.UUID, mint: str, open_units: int, amount_units: int,
                 limit: int) -> None:
        token = token_by_mint(mint)
        self.api_key_id = api_key_id
        self.open_amount = format_amount(open_units, token)
        self.amount = format_amount(amount_units, token)
        self.limit = format_amount(limit, token)
        self.symbol = token.symbol
        super().__init__(
            f"this key's unfinished orders already hold {self.open_amount} {token.symbol}; "
            f"this order's {self.amount} more would pass the limit of {self.limit} "
            f"{token.symbol} per key (MAX_KEY_EXPOSURE); retry once some of them are "
            "confirmed or failed")
