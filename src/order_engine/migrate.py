"""Applying the alembic migrations, then the chain's genesis (default pools)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

from order_engine.config import Settings
from order_engine.market.chain import SimulatedChain
from order_engine.store.db import create_engine, create_pg_pool


def migrations_dir() -> Path:
    """`migrations/` of the project: $MIGRATIONS_DIR, ./migrations, or beside `src/`."""
    candidates = [
        Path(os.environ["MIGRATIONS_DIR"]) if os.environ.get("MIGRATIONS_DIR") else None,
        Path.cwd() / "migrations",
        Path(__file__).resolve().parents[2] / "migrations",
    ]
    for path in candidates:
        if path is not None and (path / "env.py").exists():
            return path
    raise FileNotFoundError("cannot find the migrations folder; set MIGRATIONS_DIR")


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Blocking (alembic runs its own event loop): call from a thread inside async code."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)


async def seed_chain(settings: Settings) -> None:
    engine = create_engine(settings.database_url, pool_size=1)
    pg = await create_pg_pool(settings.database_url, size=1)
    try:
        await SimulatedChain(engine, pg).ensure_genesis()
    finally:
        await engine.dispose()
        await pg.close()
