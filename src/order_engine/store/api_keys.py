"""API keys: created once, shown once, stored as a hash; revoked, never deleted (their
orders and events stay)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_engine.keys import KEY_PREFIX as KEY_PREFIX
from order_engine.keys import generate_key as generate_key
from order_engine.keys import hash_key as hash_key
from order_engine.keys import key_problem, shown_prefix
from order_engine.store.db import retry_on_connection_loss
from order_engine.store.models import ApiKey

# Bootstrap-key changes are made one at a time, by every API process starting at once.
BOOTSTRAP_LOCK_ID = int.from_bytes(
    hashlib.sha256(b"order-engine:bootstrap-key").digest()[:8], "big", signed=True)


class KeyTooWeakError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    bootstrap: bool


@dataclass(frozen=True, slots=True)
class BootstrapOutcome:
    key_id: uuid.UUID | None  # None: no bootstrap key (the setting is empty)
    revoked: list[KeyInfo]  # the bootstrap keys this change revoked
    already_revoked: bool = False  # the setting names a key that was revoked: it stays so


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.key_prefix, row.created_at, row.revoked_at,
                   row.bootstrap)


class ApiKeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, name: str, key: str | None = None) -> tuple[str, uuid.UUID]:
        """A new key (or the given one, which must pass `key_problem`); returns the plain
        key and its id. Creating a key that exists already is not an error: its id is
        returned."""
        if key is not None and (problem := key_problem(key)) is not None:
            raise KeyTooWeakError(f"the key {problem}")
        plain = key or generate_key()
        async with self._sessions.begin() as session:
            key_hash = hash_key(plain)
            await session.execute(
                insert(ApiKey)
                .values(id=uuid.uuid4(), name=name, key_hash=key_hash,
                        key_prefix=shown_prefix(plain))
                .on_conflict_do_nothing(index_elements=[ApiKey.key_hash])
            )
            key_id = (
                await session.execute(select(ApiKey.id).where(ApiKey.key_hash == key_hash))
            ).scalar_one()
        return plain, key_id

    async def use_bootstrap(self, key: str | None) -> BootstrapOutcome:
        """Make `key` (BOOTSTRAP_API_KEY) the bootstrap key and revoke every other one;
        with None, revoke them all. Every API process does this as it starts, all at once
        when several start together: under one advisory lock, and idempotent. A key that
        was revoked stays revoked (revoking a leaked key must not be undone by a restart
        with the old setting) and then revokes nothing else either: a process started
        with an old setting cannot take the key away from the ones started with the new.
        """
        if key is not None and (problem := key_problem(key)) is not None:
            raise KeyTooWeakError(f"BOOTSTRAP_API_KEY {problem}")
        async with self._sessions.begin() as session:
            await session.execute(select(func.pg_advisory_xact_lock(BOOTSTRAP_LOCK_ID)))
            key_id: uuid.UUID | None = None
            others: list[ColumnElement[bool]] = [ApiKey.bootstrap.is_(True)]
            if key is not None:
                key_hash = hash_key(key)
                row = (await session.execute(
                    select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()
                if row is not None and row.revoked_at is not None:
                    return BootstrapOutcome(row.id, [], already_revoked=True)
                if row is None:
                    key_id = uuid.uuid4()
                    await session.execute(
                        insert(ApiKey)
                        .values(id=key_id, name="bootstrap", key_hash=key_hash,
                                key_prefix=shown_prefix(key), bootstrap=True)
                        .on_conflict_do_nothing(index_elements=[ApiKey.key_hash]))
                    key_id = (await session.execute(select(ApiKey.id).where(
                        ApiKey.key_hash == key_hash))).scalar_one()
                else:
                    key_id = row.id
                    if not row.bootstrap:
                        row.bootstrap = True
                others.append(ApiKey.key_hash != key_hash)
            revoked = (await session.execute(
                update(ApiKey).where(*others, ApiKey.revoked_at.is_(None))
                .values(revoked_at=func.now()).returning(ApiKey))).scalars().all()
            return BootstrapOutcome(key_id, [_info(r) for r in revoked])

    async def all(self) -> list[KeyInfo]:
        async with self._sessions() as session:
            rows = await session.execute(select(ApiKey).order_by(ApiKey.created_at))
            return [_info(row) for row in rows.scalars()]

    async def find(self, ref: str) -> list[KeyInfo]:
        """The keys `ref` names: an id, the start of an id (8 characters at least), the
        prefix `keys list` shows, or the key itself."""
        ref = ref.strip()
        conditions = [ApiKey.key_hash == hash_key(ref), ApiKey.key_prefix == ref]
        try:
            conditions.append(ApiKey.id == uuid.UUID(ref))
        except ValueError:
            if len(ref) >= 8 and all(c in "0123456789abcdef-" for c in ref.lower()):
                conditions.append(cast(ApiKey.id, String).startswith(ref.lower()))
        async with self._sessions() as session:
            rows = await session.execute(
                select(ApiKey).where(or_(*conditions)).order_by(ApiKey.created_at))
            return [_info(row) for row in rows.scalars()]

    async def revoke(self, key_id: uuid.UUID) -> KeyInfo | None:
        """Revoke the key (at once, in the record); its orders and events stay. None when
        there is no such key; a key revoked before keeps its first revocation time."""
        async with self._sessions.begin() as session:
            row = await session.get(ApiKey, key_id, with_for_update=True)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = func.now()
                await session.flush()
                await session.refresh(row)
            return _info(row)

    async def states_by_hash(self, key_hashes: list[str]) -> dict[str, uuid.UUID | None]:
        """Of these keys (by hash), those that exist: their id, or None for those revoked;
        in one query. A read: tried again on another connection if its connection
        breaks."""
        async def read(_: int) -> dict[str, uuid.UUID | None]:
            async with self._sessions() as session:
                rows = await session.execute(
                    select(ApiKey.key_hash, ApiKey.id, ApiKey.revoked_at)
                    .where(ApiKey.key_hash.in_(key_hashes)))
                return {row.key_hash: row.id if row.revoked_at is None else None
                        for row in rows.all()}

        return await retry_on_connection_loss(read, "API key lookup")

    async def ids_by_hash(self, key_hashes: list[str]) -> dict[str, uuid.UUID]:
        """The ids of those of these keys (by hash) that exist and are not revoked."""
        states = await self.states_by_hash(key_hashes)
        return {digest: key_id for digest, key_id in states.items() if key_id is not None}

    async def revoked_among(self, key_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Those of these keys that are revoked (or gone)."""
        if not key_ids:
            return []
        async with self._sessions() as session:
            live = set((await session.execute(select(ApiKey.id).where(
                ApiKey.id.in_(key_ids), ApiKey.revoked_at.is_(None)))).scalars())
        return [key_id for key_id in key_ids if key_id not in live]

    async def lookup(self, key: str) -> uuid.UUID | None:
        """The key's id (None: unknown or revoked)."""
        key_hash = hash_key(key)
        return (await self.ids_by_hash([key_hash])).get(key_hash)
