"""An order's price-impact limit (basis points), stored with the order.

Nullable, without a default: adding the column is a change of the catalog only, however
many orders there are, and an order from before it (NULL) is held to the workers'
MAX_PRICE_IMPACT_BPS.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("max_price_impact_bps", sa.Integer()))


def downgrade() -> None:
    op.drop_column("orders", "max_price_impact_bps")
