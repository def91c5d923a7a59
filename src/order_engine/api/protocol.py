"""uvicorn's httptools protocol with the bounds it lacks: request head size, a deadline for
the head and for the body, an idle bound on fresh connections; and an `Upgrade` other than
WebSocket (`curl --http2` sends `Upgrade: h2c`) ignored, the request served as HTTP/1.1.

Why httptools, and so a subclass: uvicorn's h11 protocol has a head-size bound of its own
(`h11_max_incomplete_event_size`), but the API spent 0.59-0.71 ms of CPU per ingested
order under h11 against 0.35-0.45 ms under httptools, and 0.37-0.45 ms under this
subclass (`order-engine bench ingest --connections 64 --duration 10`, three interleaved
rounds, the API process's utime+stime over the orders it took; the box was shared, and
orders/s were noise: h11 750-1,415, httptools 985-1,413, this 1,239-2,193). Neither has
a deadline for a request's head or body, and neither closes a fresh connection that
sends nothing (uvicorn's keep-alive timer starts after a response), so a subclass of
either was needed.

What was observed without this (issue 12): a header grown to 100 MiB was accepted, llhttp
handing httptools its pieces, which httptools joins with `+=` (quadratic: 12.9 s of CPU
for 100 MiB, the event loop stalled for everyone); 2,000 idle and 300 slowloris
connections (a header byte every 5 s) all stayed open; a request that promised 100 bytes
of body and sent 1 stayed open; a POST with `Upgrade: h2c` reached the app with no body
(httptools tells llhttp to skip the body of any upgrade request; uvicorn then serves a
non-WebSocket upgrade as a plain request: the app saw an empty body and answered 422).

How each bound works:
- head size: bytes are fed to the parser in pieces no longer than what the head may
  still grow by; a head still incomplete at MAX_HEADER_BYTES is answered 431 and the
  connection closed, before another byte is read. A head pipelined behind another request
  in the same piece is counted from the next piece, so it is refused by twice the bound.
- head deadline (HEADER_TIMEOUT_S): from a request's first byte to its last header; past
  it, 408 and close.
- body deadline (BODY_TIMEOUT_S): from the end of the head to the end of the body; past
  it, 408 if the app has not answered yet, else the connection is just closed.
- idle: uvicorn's keep-alive timer (KEEP_ALIVE_TIMEOUT_S), armed on a fresh connection
  too, not only after a response.
- Upgrade: a non-WebSocket upgrade request's head is fed again to the parser without its
  `Upgrade` (and `HTTP2-Settings`) header, followed by the bytes after it, so its body is
  parsed as any other (RFC 9113 section 3.1: a server may ignore the upgrade).
A connection upgraded to a WebSocket leaves this protocol: none of these applies to it.

The refusals are RFC 9457 problem details, written here since no app runs for them;
uvicorn's own 400 for a request that is not HTTP is one too. The internals of uvicorn and
httptools this relies on are checked by tests/unit/test_http_protocol.py.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from order_engine.api.problems import problem_response

# Headers that belong to the upgrade the server declines (RFC 9113 section 3.2.1).
_UPGRADE_HEADERS = frozenset({b"upgrade", b"http2-settings"})


@dataclass(frozen=True)
class HttpLimits:
    max_head_bytes: int
    head_timeout_s: float
    body_timeout_s: float
    refusal_delay_s: float = 0.0


class BoundedHttpProtocol(HttpToolsProtocol):
    """Built per server by `bounded_http_protocol` (uvicorn creates protocols itself)."""

    limits: HttpLimits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # bytes of the head being received, counted so far
        self._heads_seen = 0
        self._head_begun = False
        self._in_body = False  # between the end of a request's head and of its body
        self._replay: bytes | None = None  # a head to parse again, its upgrade removed
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        limit = self.limits.max_head_bytes
        view = memoryview(data)
        while view:
            in_head = not self._in_body
            cut = limit - self._head_bytes if in_head else limit
            piece, view = view[:cut], view[cut:]
            heads_seen = self._heads_seen
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserError:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
                return
            except httptools.HttpParserUpgrade as upgrade:
                if self._replay is None:  # a WebSocket, or CONNECT: as uvicorn does
                    if self._should_upgrade():
                        self.handle_websocket_upgrade()
                    else:
                        self._unsupported_upgrade_warning()
                    return
                rest = piece[upgrade.args[0]:].tobytes() + view.tobytes()
                view, self._replay = memoryview(self._replay + rest), None
                continue
            if in_head and not self._in_body and self._heads_seen == heads_seen:
                self._head_bytes += len(piece)  # all of it was head, still incomplete
            if not self._in_body and self._head_bytes >= limit:
                # After REFUSAL_DELAY_S, as the gate's refusals (api/gate.py), reading
                # nothing more meanwhile: a client that sends an endless head on a new
                # connection as soon as one closes made ~370 a second, and another key's
                # p99 went from 20 to 150 ms.
                self._cancel_timers()
                self.transport.pause_reading()
                self._head_timer = self.loop.call_later(
                    self.limits.refusal_delay_s, functools.partial(
                        self._refuse, 431, "Request header fields too large",
                        f"the request line and headers are over {limit} bytes "
                        "(MAX_HEADER_BYTES)"))
                return
        if self._in_body:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.limits.body_timeout_s,
                                                        self._body_timed_out)
        elif (self._head_begun or self._head_bytes) and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s,
                                                    self._head_timed_out)

    # Parser callbacks

    def on_message_begin(self) -> None:
        self._head_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_bytes = 0
        self._heads_seen += 1
        self._head_begun = False
        self._in_body = True
        if (self.parser.should_upgrade() and not self._should_upgrade()
                and self.parser.get_method() != b"CONNECT"):
            self._replay = self._head_without_upgrade()
            return  # httptools skips this body: the head is parsed again, with it
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._replay is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._replay is None:
            super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "Bad request", f"not a valid HTTP/1.1 request ({msg})")

    # Bounds

    def _head_without_upgrade(self) -> bytes:
        version = self.parser.get_http_version().encode()
        lines = [self.parser.get_method() + b" " + self.url + b" HTTP/" + version]
        for name, value in self.headers:  # uvicorn lowercased the names
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",")]
                value = b", ".join(t for t in tokens if t.lower() not in _UPGRADE_HEADERS)
                if not value:
                    continue
            elif name in _UPGRADE_HEADERS:
                continue
            lines.append(name + b": " + value)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(408, "Request timeout", "the request line and headers did not arrive "
                     f"within {self.limits.head_timeout_s:g} s (HEADER_TIMEOUT_S)")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        self._refuse(408, "Request timeout", "the request body did not arrive within "
                     f"{self.limits.body_timeout_s:g} s of its headers (BODY_TIMEOUT_S)",
                     in_body=True)

    def _refuse(self, status: int, title: str, detail: str, *, in_body: bool = False) -> None:
        """Answer with this problem and close; only close if that would mix with an answer
        begun (in a body: this request's; in a head: the request before it, pipelined)."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None:
            if cycle.response_started if in_body else not cycle.response_complete:
                self.transport.close()
                return
            if in_body:  # the app may still be waiting for the body: it is not coming
                cycle.disconnected = True
                cycle.message_event.set()
        response = problem_response(status, title, detail,
                                    type_=title.lower().replace(" ", "-"),
                                    headers={"Connection": "close"})
        head = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            head.append(name + b": " + value + b"\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + bytes(response.body))
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


def bounded_http_protocol(limits: HttpLimits) -> type[BoundedHttpProtocol]:
    """The protocol class to hand uvicorn (`http=`), with these limits."""
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), {"limits": limits})
