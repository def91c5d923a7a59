"""What the browser tests share: chromium's flags, viewports, a console-error collector."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import ConsoleMessage, Error, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium keeps calling home, and this closed
# network refuses those connections.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Screenshots go to test-artifacts/ (a test run leaves the tree clean); with
# UPDATE_SCREENSHOTS=1 they replace the ones the README shows, in docs/screenshots/.
_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = (_ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS")
               else _ROOT / "test-artifacts" / "screenshots")
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 812}


class ConsoleErrors:
    """Every console error and uncaught exception of a page, as text."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"console: {message.text} ({message.location})")

    def _on_page_error(self, error: Error) -> None:
        self.messages.append(f"pageerror: {error.message}")
