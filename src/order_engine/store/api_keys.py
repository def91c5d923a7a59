"""API keys: created once, shown once, stored as a hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_engine.store.db import retry_on_connection_loss
from order_engine.store.models import ApiKey

KEY_PREFIX = "oe_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, name: str, key: str | None = None) -> tuple[str, uuid.UUID]:
        """A new key (or the given one, for bootstrap); returns the plain key and its id.

        Creating a key that exists already is not an error: its id is returned.
        """
        plain = key or generate_key()
        async with self._sessions.begin() as session:
            key_hash = hash_key(plain)
            await session.execute(
                insert(ApiKey)
                .values(id=uuid.uuid4(), name=name, key_hash=key_hash, key_prefix=plain[:8])
                .on_conflict_do_nothing(index_elements=[ApiKey.key_hash])
            )
            key_id = (
                await session.execute(select(ApiKey.id).where(ApiKey.key_hash == key_hash))
            ).scalar_one()
        return plain, key_id

    async def ids_by_hash(self, key_hashes: list[str]) -> dict[str, uuid.UUID]:
        """The ids of those of these keys (by hash) that exist and are not revoked, in one
        query. A read: tried again on another connection if its connection breaks."""
        async def read(_: int) -> dict[str, uuid.UUID]:
            async with self._sessions() as session:
                rows = await session.execute(
                    select(ApiKey.key_hash, ApiKey.id).where(
                        ApiKey.key_hash.in_(key_hashes), ApiKey.revoked_at.is_(None)))
                return {row.key_hash: row.id for row in rows.all()}

        return await retry_on_connection_loss(read, "API key lookup")

    async def lookup(self, key: str) -> uuid.UUID | None:
        """The key's id (None: unknown or revoked)."""
        key_hash = hash_key(key)
        return (await self.ids_by_hash([key_hash])).get(key_hash)
