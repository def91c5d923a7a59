"""Browser fixtures: Debian's chromium driven by playwright, and a stack to point it at.

The stack runs with simulated latency x0.3, so statuses change at a pace a browser (and a
person watching the screenshots) can see, while a test still takes seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from order_engine.config import Settings
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.stack import Stack, running_stack


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run `make browser-deps` (as root) to install it")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="module")
async def dashboard_stack(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    async with running_stack(make_settings(sim_latency_scale=0.3)) as stack:
        yield stack


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
