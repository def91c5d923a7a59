"""Real PostgreSQL and Redis for the tests: from the environment, local, or embedded."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from order_engine.embedded import EmbeddedServers

_embedded: EmbeddedServers | None = None


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _embedded_servers() -> EmbeddedServers:
    global _embedded
    if _embedded is None:
        _embedded = EmbeddedServers(Path(tempfile.mkdtemp(prefix="oe-test-")))
    return _embedded


def server_database_url() -> str:
    """A URL of a PostgreSQL server where the tests may create and drop databases."""
    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    if _answers("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    embedded = _embedded_servers()
    return embedded.database_url or embedded.start_postgres()


def server_redis_url() -> str:
    if os.environ.get("TEST_REDIS_URL"):
        return os.environ["TEST_REDIS_URL"]
    if _answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    embedded = _embedded_servers()
    return embedded.redis_url or embedded.start_redis()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def stop_embedded() -> None:
    if _embedded is not None:
        _embedded.stop()
