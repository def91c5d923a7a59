"""Security headers on every answer, and /docs served whole by the service (no CDN)."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import httpx
import pytest

from tests.stack import API_KEY, Stack

FRAMING_AND_SNIFFING = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    directives = [d.split() for d in policy.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def _assert_security_headers(response: httpx.Response) -> dict[str, list[str]]:
    for name, value in FRAMING_AND_SNIFFING.items():
        assert response.headers.get(name) == value, (response.url, name)
    csp = _csp(response)
    assert csp["frame-ancestors"] == ["'none'"]
    return csp


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css"])
async def test_the_dashboard_allows_this_origin_only(stack: Stack, path: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.get(path)
    assert response.status_code == 200
    csp = _assert_security_headers(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]


async def test_the_dashboard_page_has_no_inline_script_or_style(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        html = (await http.get("/")).text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert re.findall(r"\sstyle=", html) == []
    assert re.findall(r"\son[a-z]+=", html) == []  # no inline event handlers


@pytest.mark.parametrize(("method", "path", "key", "status"), [
    ("GET", "/api/tokens", API_KEY, 200),
    ("GET", "/api/tokens", None, 401),
    ("POST", "/api/orders", API_KEY, 201),  # the fast submit path
    ("POST", "/api/orders", None, 401),  # refused before the body is read
    ("GET", "/healthz", None, 200),
    ("GET", "/openapi.json", None, 200),
    ("GET", "/no-such-page", None, 404),
])
async def test_every_api_answer_carries_them_too(
    stack: Stack, method: str, path: str, key: str | None, status: int,
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"inputToken": "SOL", "outputToken": "USDC", "amount": "0.01"}
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.request(method, path, headers=headers,
                                      json=body if method == "POST" else None)
    assert response.status_code == status
    csp = _assert_security_headers(response)
    assert csp["default-src"] == ["'none'"]  # never a page


async def test_docs_are_served_by_the_service_itself(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        csp = _assert_security_headers(page)
        html = page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(assets) >= 3  # the script, the stylesheet, the icon
        for url in assets:
            # Same origin: a path on this server, not another host.
            assert url.startswith("/"), url
            assert not url.startswith("//"), url
            assert not urlsplit(url).netloc, url
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
            _assert_security_headers(asset)
        assert "cdn" not in html.lower()
        assert "https://" not in html
        # The page's one inline script (Swagger UI's set-up) is allowed by its hash, and
        # nothing else inline is.
        inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
        assert len(inline) == 1
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        assert csp["script-src"] == ["'self'", f"'sha256-{digest}'"]
        assert csp["default-src"] == ["'self'"]
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]
        # The spec it renders, from this origin too; ReDoc (inline styles) is not served.
        assert (await http.get("/openapi.json")).json()["openapi"].startswith("3.1")
        assert (await http.get("/redoc")).status_code == 404
