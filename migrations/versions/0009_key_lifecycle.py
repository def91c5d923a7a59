"""API-key lifecycle: which key is the bootstrap key, and the key compose used to ship.

`bootstrap` marks the key that BOOTSTRAP_API_KEY made: when the setting changes, the API
revokes the bootstrap keys other than the one it names (api_keys.revoked_at, in the table
since 0001). Until now the API made that key with the name "bootstrap", so those rows are
the bootstrap keys.

The key docker-compose.yml used to default to (`dev-key-change-me`, known to everyone who
read the file) is revoked: its orders and events stay, the key no longer opens anything.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHIPPED_KEY_HASH = hashlib.sha256(b"dev-key-change-me").hexdigest()


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column("api_keys", sa.Column("bootstrap", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.execute("UPDATE api_keys SET bootstrap = true WHERE name = 'bootstrap'")
    op.execute(sa.text("UPDATE api_keys SET revoked_at = now() "
                       "WHERE key_hash = :hash AND revoked_at IS NULL")
               .bindparams(hash=SHIPPED_KEY_HASH))


def downgrade() -> None:
    op.drop_column("api_keys", "bootstrap")
