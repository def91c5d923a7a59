"""API keys over their life: `order-engine keys revoke` (every API process refuses the key
at once, its sockets close), the bootstrap key replaced when BOOTSTRAP_API_KEY changes
(also with several API processes starting together), and keys too short refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
import websockets

from order_engine.api import auth
from order_engine.config import Settings
from order_engine.embedded import free_port
from order_engine.keys import generate_key, hash_key
from order_engine.migrate import upgrade_database
from tests.conftest import fresh_database
from tests.processes import env_for, terminate, wait_until_ready
from tests.stack import Stack, running_stack

# How soon every API process refuses a revoked key when the revocation is announced on
# Redis (it takes a round trip; the bound without the announcement is CACHE_TTL_S).
ANNOUNCED_WITHIN_S = 2.0


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "order_engine.cli", *args],
        env={**env_for(settings), "COLUMNS": "200"}, capture_output=True, text=True,
        timeout=60)


async def _refused_within(http: httpx.AsyncClient, key: str, seconds: float) -> httpx.Response:
    """Poll with the key until it gets 401; fails past `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get("/api/tokens", headers={"X-API-Key": key})
        if response.status_code == 401:
            return response
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, f"the key still works after {seconds} s"
        await asyncio.sleep(0.02)


def _assert_revoked_answer(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/api-key-revoked")
    assert "revoked" in problem["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_revoked_key_is_refused_at_once_and_its_sockets_close(stack: Stack) -> None:
    key, key_id = await stack.services.api_keys.create("to-revoke")
    order_id = await stack.submit(key=key)
    await stack.wait_terminal(order_id, key=key)
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        # Cached by the API now: only the announcement makes it forget the key early.
        assert (await http.get("/api/tokens", headers={"X-API-Key": key})).status_code == 200
        async with websockets.connect(f"{stack.ws_url}/ws/orders",
                                      additional_headers={"X-API-Key": key}) as firehose:
            assert orjson.loads(await firehose.recv())["type"] == "snapshot"

            result = await asyncio.to_thread(
                _cli, stack.settings, "keys", "revoke", str(key_id)[:8])
            assert result.returncode == 0, result.stderr
            assert f"revoked key {key_id}" in result.stdout
            assert "told at once" in result.stdout

            _assert_revoked_answer(await _refused_within(http, key, ANNOUNCED_WITHIN_S))
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(ANNOUNCED_WITHIN_S):
                    await firehose.recv()
            assert firehose.close_code == 4401
            assert firehose.close_reason == "API key revoked"

        # Refused before its body is read, too; and a new socket is refused with 4401.
        submitted = await http.post("/api/orders", headers={"X-API-Key": key},
                                    json={"inputToken": "SOL", "outputToken": "USDC",
                                          "amount": "1"})
        _assert_revoked_answer(submitted)
    messages, code = await stack.watch(order_id, key=key)
    assert (messages, code) == ([], 4401)
    # Its orders and their events stay (for the record; nobody can read them with it).
    assert (await stack.services.orders.events(uuid.UUID(order_id)))[-1].status == "confirmed"
    # A key that never existed still gets the plain 401.
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        unknown = await http.get("/api/tokens", headers={"X-API-Key": generate_key()})
    assert unknown.status_code == 401
    assert unknown.json()["type"].endswith("/unauthorized")


async def test_keys_revoke_finds_keys_by_id_prefix_or_key_and_says_what_it_did(
    stack: Stack,
) -> None:
    key, key_id = await stack.services.api_keys.create("cli-revoke")
    listed = await asyncio.to_thread(_cli, stack.settings, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(key_id) in listed.stdout
    assert key[:8] in listed.stdout
    assert key not in listed.stdout  # never the key itself

    missing = await asyncio.to_thread(_cli, stack.settings, "keys", "revoke", "no-such-key")
    assert missing.returncode == 1
    assert "no API key matches" in missing.stderr

    by_key = await asyncio.to_thread(_cli, stack.settings, "keys", "revoke", key)
    assert by_key.returncode == 0, by_key.stderr
    assert f"revoked key {key_id}" in by_key.stdout
    again = await asyncio.to_thread(_cli, stack.settings, "keys", "revoke", str(key_id))
    assert again.returncode == 0
    assert "already revoked" in again.stdout

    listed = await asyncio.to_thread(_cli, stack.settings, "keys", "list")
    assert str(key_id) not in listed.stdout
    listed_all = await asyncio.to_thread(_cli, stack.settings, "keys", "list", "--all")
    assert str(key_id) in listed_all.stdout


async def test_without_the_announcement_a_revoked_key_stops_within_the_cache_lifetime(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bound when Redis did not carry the revocation (CLI without REDIS_URL, the API
    # cut off from Redis): a cached key is looked up again after CACHE_TTL_S. Shortened
    # here to keep the test short; the mechanism is the same.
    monkeypatch.setattr(auth, "CACHE_TTL_S", 1.0)
    async with running_stack(make_settings()) as stack:
        key, key_id = await stack.services.api_keys.create("silent-revoke")
        async with httpx.AsyncClient(base_url=stack.base_url) as http:
            assert (await http.get("/api/tokens", headers={"X-API-Key": key})).status_code \
                == 200
            await stack.services.api_keys.revoke(key_id)  # in the record only
            _assert_revoked_answer(await _refused_within(http, key, 1.0 + 1.0))


async def test_after_a_redis_reconnect_revocations_missed_meanwhile_take_effect(
    stack: Stack,
) -> None:
    # Revoked while the API was cut off from Redis (nothing announced): what the hub does
    # when it is connected again makes the API look every key up again and close the
    # sockets of the keys revoked meanwhile.
    key, key_id = await stack.services.api_keys.create("missed-revoke")
    assert stack.hub is not None
    assert stack.hub.key_listener is not None
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        assert (await http.get("/api/tokens", headers={"X-API-Key": key})).status_code == 200
        async with websockets.connect(f"{stack.ws_url}/ws/orders",
                                      additional_headers={"X-API-Key": key}) as firehose:
            assert orjson.loads(await firehose.recv())["type"] == "snapshot"
            await stack.services.api_keys.revoke(key_id)  # in the record only
            assert (await http.get("/api/tokens", headers={"X-API-Key": key})).status_code \
                == 200  # still cached: nothing told the API
            stack.hub.key_listener.reconnected()
            _assert_revoked_answer(await http.get("/api/tokens", headers={"X-API-Key": key}))
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(ANNOUNCED_WITHIN_S):
                    await firehose.recv()
            assert firehose.close_code == 4401


# --- the bootstrap key ------------------------------------------------------------------


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """These tests revoke bootstrap keys, which in the shared database would take the key
    of every other test."""
    async with fresh_database() as url:
        yield url


@contextlib.contextmanager
def _apis(settings: Settings, count: int = 1) -> Iterator[str]:
    """`count` real `order-engine api` processes on one port, started at once; their URL."""
    env = {**env_for(settings), "API_REUSE_PORT": "1" if count > 1 else "0"}
    procs = [subprocess.Popen([sys.executable, "-m", "order_engine.cli", "api"], env=env)
             for _ in range(count)]
    try:
        base = f"http://127.0.0.1:{settings.port}"
        wait_until_ready(base, procs)
        yield base
    finally:
        terminate(procs)
        for proc in procs:  # a lifespan that crashed (a unique violation...) exits 3
            assert proc.returncode in (0, -15), proc.args


async def _status(base: str, key: str) -> int:
    async with httpx.AsyncClient(base_url=base) as http:
        return (await http.get("/api/tokens", headers={"X-API-Key": key})).status_code


async def test_changing_the_bootstrap_key_revokes_the_old_one_everywhere(
    own_database: str, make_settings: Callable[..., Settings],
) -> None:
    old, new, newest = generate_key(), generate_key(), generate_key()
    base_settings = make_settings(database_url=own_database)

    def settings(key: str) -> Settings:
        return base_settings.model_copy(update={"bootstrap_api_key": key,
                                                "port": free_port()})

    with _apis(settings(old)) as running:
        assert await _status(running, old) == 200
        # Another API process starts with the new setting: the old key stops working
        # there, and on the process already running (told over Redis), at once.
        with _apis(settings(new)) as restarted:
            assert await _status(restarted, new) == 200
            assert await _status(restarted, old) == 401
            async with httpx.AsyncClient(base_url=running) as http:
                _assert_revoked_answer(await _refused_within(http, old, ANNOUNCED_WITHIN_S))
            assert await _status(running, new) == 200

    # Started again with the old setting (a stale replica): the old key stays revoked,
    # and the new one is not taken away.
    with _apis(settings(old)) as stale:
        assert await _status(stale, old) == 401
        assert await _status(stale, new) == 200

    # Three processes starting at once with the next key: no crash, one bootstrap key.
    with _apis(settings(newest), count=3) as replicas:
        for _ in range(6):  # the kernel spreads connections over the three
            assert await _status(replicas, newest) == 200
            assert await _status(replicas, new) == 401

    conn = await asyncpg.connect(own_database)
    try:
        rows = await conn.fetch("SELECT key_hash, revoked_at FROM api_keys WHERE bootstrap")
    finally:
        await conn.close()
    live = [row["key_hash"] for row in rows if row["revoked_at"] is None]
    assert live == [hash_key(newest)]
    assert len(rows) == 3

    # No BOOTSTRAP_API_KEY any more: no bootstrap key either.
    with _apis(settings("")) as none:
        assert await _status(none, newest) == 401


async def test_a_short_bootstrap_key_is_refused_at_startup_with_a_clear_message(
    make_settings: Callable[..., Settings],
) -> None:
    env = {**env_for(make_settings(port=free_port())), "BOOTSTRAP_API_KEY": "dev-key-change-me"}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "order_engine.cli", "api"], env=env,
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "BOOTSTRAP_API_KEY is 17 characters long; an API key must have at least 32" in message
    assert "dev-key-change-me" not in result.stderr + result.stdout  # the value is not shown
    assert "Traceback" not in result.stderr


async def test_the_migration_marks_bootstrap_keys_and_revokes_the_one_compose_shipped(
) -> None:
    async with fresh_database("0006") as url:
        conn = await asyncpg.connect(url)
        try:
            insert = ("INSERT INTO api_keys (id, name, key_hash, key_prefix) "
                      "VALUES ($1, $2, $3, $4)")
            shipped, mine = generate_key(), generate_key()
            await conn.execute(insert, uuid.uuid4(), "bootstrap",
                               hash_key("dev-key-change-me"), "dev-key-")
            await conn.execute(insert, uuid.uuid4(), "bootstrap", hash_key(shipped),
                               shipped[:8])
            await conn.execute(insert, uuid.uuid4(), "bot", hash_key(mine), mine[:8])
            await asyncio.to_thread(upgrade_database, url)
            rows = {row["key_hash"]: row for row in await conn.fetch(
                "SELECT key_hash, bootstrap, revoked_at FROM api_keys")}
        finally:
            await conn.close()
    assert rows[hash_key("dev-key-change-me")]["revoked_at"] is not None
    assert rows[hash_key(shipped)]["bootstrap"]
    assert rows[hash_key(shipped)]["revoked_at"] is None
    assert not rows[hash_key(mine)]["bootstrap"]
    assert rows[hash_key(mine)]["revoked_at"] is None


async def test_up_replaces_a_revoked_dev_key(
    stack: Stack, make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    from order_engine.supervisor import DEV_KEY_FILE, _dev_key

    settings = make_settings(data_dir=str(tmp_path), bootstrap_api_key="")
    first = await asyncio.to_thread(_dev_key, settings)
    assert await asyncio.to_thread(_dev_key, settings) == first  # kept across runs
    _, key_id = await stack.services.api_keys.create("dev", first)
    assert await asyncio.to_thread(_dev_key, settings) == first  # known and live: kept
    await stack.services.api_keys.revoke(key_id)
    second = await asyncio.to_thread(_dev_key, settings)
    assert second != first
    assert (tmp_path / DEV_KEY_FILE).read_text().strip() == second
    assert os.stat(tmp_path / DEV_KEY_FILE).st_mode & 0o077 == 0
