"""Each key's exposure: the input of its unfinished orders, per input token.

`key_exposure.open_amount` is what a key's orders not yet confirmed or failed hold of one
input token (base units). A submission adds its amount, in the statement that stores the
order, only while the sum stays within MAX_KEY_EXPOSURE (store/submissions.py,
store/repository.py); a trigger takes it off in the same transaction as the order's move
to `confirmed` or `failed` (or a delete of an unfinished order). So the counter is exact
through crashes (one transaction), and concurrent submissions of one key, from any API
process, queue on its row instead of each reading a sum that the others are changing.

The counter starts from the orders unfinished now: apply this while no API or worker is
running (an order stored or finished meanwhile by the old code would not be counted).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "status NOT IN ('confirmed', 'failed')"


def upgrade() -> None:
    op.create_table(
        "key_exposure",
        sa.Column("api_key_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("api_keys.id", name="fk_key_exposure_api_key_id_api_keys"),
                  primary_key=True),
        sa.Column("input_mint", sa.Text(), primary_key=True),
        sa.Column("open_amount", sa.Numeric(39, 0), nullable=False, server_default="0"),
        # What the last submission statement admitted (its orders' running total).
        sa.Column("last_granted", sa.Numeric(39, 0), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("api_key_id", "input_mint", name="pk_key_exposure"),
    )
    op.execute(
        "INSERT INTO key_exposure (api_key_id, input_mint, open_amount) "
        f"SELECT api_key_id, input_mint, sum(amount_in) FROM orders WHERE {UNFINISHED} "
        "GROUP BY api_key_id, input_mint")
    op.execute("""
        CREATE FUNCTION release_key_exposure() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE key_exposure SET open_amount = open_amount - OLD.amount_in
             WHERE api_key_id = OLD.api_key_id AND input_mint = OLD.input_mint;
            RETURN NULL;
        END $$""")
    op.execute(f"""
        CREATE TRIGGER orders_finished_release_exposure AFTER UPDATE OF status ON orders
        FOR EACH ROW WHEN (OLD.{UNFINISHED} AND NEW.status IN ('confirmed', 'failed'))
        EXECUTE FUNCTION release_key_exposure()""")
    op.execute(f"""
        CREATE TRIGGER orders_deleted_release_exposure AFTER DELETE ON orders
        FOR EACH ROW WHEN (OLD.{UNFINISHED})
        EXECUTE FUNCTION release_key_exposure()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER orders_deleted_release_exposure ON orders")
    op.execute("DROP TRIGGER orders_finished_release_exposure ON orders")
    op.execute("DROP FUNCTION release_key_exposure()")
    op.drop_table("key_exposure")
