"""What order_engine/api/protocol.py relies on in uvicorn and httptools. A failure here
means a new version changed it: re-read the changed code and protocol.py before updating
a digest (the integration tests in test_slow_clients.py say whether the bounds still hold).
"""

from __future__ import annotations

import hashlib
import inspect

import httptools
import pytest
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

# The code protocol.py extends or replaces (data_received: parsed in pieces now), and what
# it reads and sets of a request's cycle (response_started/complete, disconnected,
# message_event). Digests of their source, as of uvicorn 0.54.0.
RELIED_ON = {
    HttpToolsProtocol.__init__: "4f08999410347141",
    HttpToolsProtocol.connection_made: "6efb565ff3d36b91",
    HttpToolsProtocol.connection_lost: "c91a4c9bf2e29c55",
    HttpToolsProtocol.data_received: "010a7ae59a5d3b1a",
    HttpToolsProtocol.on_message_begin: "96d377fdc7c2baef",
    HttpToolsProtocol.on_headers_complete: "1ea8589acfad92d8",
    HttpToolsProtocol.on_body: "dba9c32aeba35b6a",
    HttpToolsProtocol.on_message_complete: "1fbad42dc31fc01f",
    HttpToolsProtocol.on_response_complete: "64e254f28e389e76",
    HttpToolsProtocol.handle_websocket_upgrade: "179c4f769386ab89",
    HttpToolsProtocol.send_400_response: "ae5a4a3782b646fd",
    HttpToolsProtocol._should_upgrade: "8fcad1ab8e096739",
    HttpToolsProtocol._unsupported_upgrade_warning: "55bbd2762b189d9a",
    HttpToolsProtocol._unset_keepalive_if_required: "00a6a4e47214e68e",
    HttpToolsProtocol.timeout_keep_alive_handler: "8b53bf5f2e202970",
    RequestResponseCycle.__init__: "4d2f220910c33c12",
    RequestResponseCycle.send: "abdd8601b326a8da",
    RequestResponseCycle.receive: "8124ae006be71184",
}


@pytest.mark.parametrize("function", RELIED_ON, ids=lambda f: f.__qualname__)
def test_the_uvicorn_code_relied_on_is_unchanged(function: object) -> None:
    source = inspect.getsource(function)  # type: ignore[arg-type]
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == RELIED_ON[function], (  # type: ignore[index]
        f"uvicorn's {function.__qualname__} changed: check order_engine/api/protocol.py")  # type: ignore[attr-defined]


def test_uvicorn_has_status_lines_for_the_refusals() -> None:
    for status in (400, 408, 431):
        assert STATUS_LINE[status].startswith(f"HTTP/1.1 {status} ".encode())


class _Events:
    def __init__(self) -> None:
        self.body = b""
        self.complete = 0

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def test_httptools_skips_an_upgrade_requests_body_and_says_where_it_starts() -> None:
    # Why protocol.py parses such a head again without its upgrade: httptools tells
    # llhttp there is no body, and raises with the offset of the bytes after the head.
    head = (b"POST /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
            b"Content-Length: 5\r\n\r\n")
    events = _Events()
    parser = httptools.HttpRequestParser(events)
    with pytest.raises(httptools.HttpParserUpgrade) as upgrade:
        parser.feed_data(memoryview(head + b"hello"))
    assert upgrade.value.args[0] == len(head)
    assert (events.body, events.complete) == (b"", 1)
    # The same parser goes on with the next request, which protocol.py feeds it.
    parser.feed_data(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    assert (events.body, events.complete) == (b"hello", 2)
