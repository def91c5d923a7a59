"""A TCP proxy in front of PostgreSQL that misbehaves as a network can, on cue.

- `eof_delay_s`: when the server closes a connection, the client hears of it that much
  later. The server's last words (a FATAL error after pg_terminate_backend) arrive at
  once; only the close is late. A busy client's event loop sees the same order of things,
  with a shorter gap, every time a backend is terminated.
- `cut_on`: the first reply from the server that contains these bytes is thrown away and
  the client's connection cut: the statement ran (and committed), the client never hears.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from order_engine.embedded import free_port


class PgProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.eof_delay_s = 0.0
        self.cut_on: bytes | None = None
        self.server_closed = asyncio.Event()  # a server closed a connection
        self.cut = asyncio.Event()  # a reply was thrown away, its connection cut
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _pipe_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         upstream: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.cut_on is not None and self.cut_on in data:
                    self.cut_on = None
                    writer.transport.abort()
                    upstream.transport.abort()
                    self.cut.set()
                    return
                writer.write(data)
                await writer.drain()
        self.server_closed.set()
        await asyncio.sleep(self.eof_delay_s)
        writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        for pipe in (self._pipe_up(client_reader, up_writer),
                     self._pipe_down(up_reader, client_writer, up_writer)):
            task = asyncio.create_task(pipe)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PgProxy]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        try:
            yield self
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
