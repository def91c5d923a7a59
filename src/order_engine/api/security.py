"""Security headers, added to every response as it starts (one list, made once).

Pages (the dashboard, its static files, /docs and its assets) get a Content-Security-Policy
that allows this origin only: no inline script or style, no framing (`frame-ancestors
'none'`, and X-Frame-Options for older browsers), no referrer (a dashboard opened with
`?apiKey=` must not send its address to anyone), no MIME sniffing. Everything else (the
JSON API, problems, health, metrics) gets the strictest policy: it is never a page.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Message, Scope, Send

# `connect-src 'self'` covers the same origin's ws:// and wss:// too (CSP level 3).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
Headers = list[tuple[bytes, bytes]]


def security_headers(csp: str) -> Headers:
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


PAGE_HEADERS = security_headers(PAGE_CSP)
API_HEADERS = security_headers(API_CSP)
PAGE_PATH_PREFIXES = ("/static/", "/docs/")


def page_csp(script_hashes: Iterable[str] = ()) -> str:
    """PAGE_CSP, with these inline scripts ('sha256-...') allowed as well."""
    sources = " ".join(f"'{digest}'" for digest in script_hashes)
    return PAGE_CSP.replace("script-src 'self'", f"script-src 'self' {sources}".rstrip())


def headers_for(scope: Scope, pages: dict[str, Headers]) -> Headers:
    path: str = scope["path"]
    exact = pages.get(path)
    if exact is not None:
        return exact
    if path.startswith(PAGE_PATH_PREFIXES):
        return PAGE_HEADERS
    return API_HEADERS


def adding_headers(send: Send, headers: Headers) -> Send:
    """`send`, with `headers` added to the response's start."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            # A new list (a response may send its own again), in the message made for
            # this send. About 2 us a request: the fast submit path adds the headers to
            # its answers itself instead (routes.submit_fast).
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
