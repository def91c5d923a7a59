"""A revoked API key stops working on this API process at once: the event hub hears the
revocation on Redis (events.publish_revoked, sent by `order-engine keys revoke` and by a
bootstrap-key change); the key leaves the authenticator's cache and its WebSockets close
with 4401. After a Redis reconnect (revocations may have been missed meanwhile) every key
is looked up again, and the keys of the open sockets are checked in one query."""

from __future__ import annotations

import asyncio
import uuid

import structlog

from order_engine.api.auth import Authenticator
from order_engine.events import EventHub
from order_engine.store.api_keys import ApiKeyStore

log = structlog.get_logger(__name__)


class KeyRevocations:
    def __init__(self, authenticator: Authenticator, hub: EventHub,
                 store: ApiKeyStore) -> None:
        self._authenticator = authenticator
        self._hub = hub
        self._store = store
        self._checks: set[asyncio.Task[None]] = set()

    def keys_revoked(self, key_ids: set[uuid.UUID]) -> None:
        self._authenticator.forget(key_ids)
        closed = self._hub.end_keys(key_ids)
        log.info("api keys revoked", keys=[str(k) for k in key_ids], sockets_closed=closed)

    def reconnected(self) -> None:
        self._authenticator.clear()
        task = asyncio.create_task(self._check_sockets(), name="key-revocation-check")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_sockets(self) -> None:
        keys = self._hub.subscribed_keys()
        if not keys:
            return
        try:
            revoked = await self._store.revoked_among(list(keys))
        except Exception as exc:  # noqa: BLE001 - the sockets stay; the next reconnect checks again
            log.warning("revocation check failed", error=str(exc))
            return
        if revoked:
            self.keys_revoked(set(revoked))
