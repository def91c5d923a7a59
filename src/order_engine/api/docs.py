"""/docs: Swagger UI served by the service itself, with no CDN (it works offline, and the
page's Content-Security-Policy allows this origin only).

The assets are those the `fastapi-offline` package ships (Swagger UI 5, which reads the
OpenAPI 3.1 documents FastAPI writes; `swagger-ui-bundle`'s 4.15 cannot). The page is
FastAPI's own, made once: its one inline script is allowed by its hash. ReDoc is not
served: its styles are injected inline, which the policy refuses.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from order_engine.api.security import Headers, page_csp, security_headers

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def script_hashes(html: str) -> list[str]:
    """The CSP hash source of each inline script of the page."""
    return ["sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            for body in _INLINE_SCRIPT.findall(html)]


def install_docs(app: FastAPI) -> dict[str, Headers]:
    """Serve /docs and its assets; returns the security headers of the page."""
    assert app.openapi_url is not None
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        oauth2_redirect_url=None,
        # No "validator badge" fetched from swagger.io.
        swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
    )
    html = bytes(page.body).decode()

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(html)

    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    return {DOCS_PATH: security_headers(page_csp(script_hashes(html)))}
