"""The dashboard in a real headless chromium, against a real API and worker.

Each test leaves a screenshot in test-artifacts/screenshots/ (docs/screenshots/ with
UPDATE_SCREENSHOTS=1): look at them, they are the review.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, expect

from order_engine.config import Settings
from tests.browser.support import DESKTOP, PHONE, ConsoleErrors
from tests.stack import API_KEY, Stack, running_stack

pytestmark = pytest.mark.e2e

LIFECYCLE = ["pending", "routing", "building", "submitted", "confirmed"]
TERMINAL_TIMEOUT_MS = 30_000

# Records every text a status badge of the orders table shows, so the test can tell that
# rows were updated live (several statuses, in order) rather than drawn once at the end.
WATCH_STATUS_BADGES = """
() => {
  window.__statusTexts = [];
  const record = () => {
    for (const badge of document.querySelectorAll('[data-testid^="order-status-"]')) {
      const seen = window.__statusTexts;
      const entry = [badge.dataset.testid, badge.textContent];
      const last = seen.findLast((e) => e[0] === entry[0]);
      if (!last || last[1] !== entry[1]) seen.push(entry);
    }
  };
  new MutationObserver(record).observe(document.querySelector('[data-testid="orders-table"]'),
    { subtree: true, childList: true, characterData: true });
}
"""


@dataclass
class OrderFlow:
    """What happened while a person submitted an order and opened it (test 1)."""

    order_id: str
    order: dict[str, Any]
    badge_texts: list[str]
    list_requests: list[str]
    console_errors: list[str]


async def open_dashboard(page: Page, stack: Stack, hash_route: str = "") -> None:
    await page.goto(f"{stack.base_url}/?apiKey={API_KEY}{hash_route}")
    landing = "order-page" if hash_route.startswith("#/orders/") else "orders-table"
    await expect(page.get_by_test_id(landing)).to_be_visible()


async def wait_for_panels(page: Page) -> None:
    """Until the market panel has drawn a sparkline (two polls) and the stats panel counts
    a finished order: what a screenshot should show."""
    pair = page.get_by_test_id("market-pair-SOL-USDC")
    await expect(pair).to_be_visible()
    await expect(pair.locator("svg.sparkline polyline")).to_have_count(2, timeout=10_000)
    await expect(page.get_by_test_id("stats-done")).not_to_have_text("0", timeout=15_000)


async def expect_confirmed_order_page(page: Page, order: dict[str, Any]) -> None:
    """Status confirmed; every stage once, in order; the transaction and what it gave."""
    await expect(page.get_by_test_id("order-page-status")).to_have_text("confirmed")
    timeline = page.get_by_test_id("order-timeline")
    for status in LIFECYCLE:
        await expect(timeline.get_by_test_id(f"timeline-item-{status}")).to_have_count(1)
    items = await timeline.locator("li.timeline-item").evaluate_all(
        "items => items.map((item) => item.dataset.testid)"
    )
    assert items == [f"timeline-item-{status}" for status in LIFECYCLE]
    await expect(page.get_by_test_id("order-tx-hash")).to_have_text(order["txHash"])
    await expect(page.get_by_test_id("order-actual-out")).to_contain_text(order["amountOut"])
    await expect(page.get_by_test_id("order-failure-reason")).to_have_count(0)


@pytest.fixture(scope="module")
async def order_flow(
    browser: Browser, dashboard_stack: Stack, screenshots: Path
) -> AsyncIterator[OrderFlow]:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    console = ConsoleErrors(page)
    list_requests: list[str] = []

    def on_request(request: Request) -> None:
        if re.search(r"/api/orders(\?|$)", request.url) and request.method == "GET":
            list_requests.append(request.url)

    page.on("request", on_request)
    try:
        await open_dashboard(page, dashboard_stack)
        # The key moved to storage and out of the address bar.
        assert "apiKey" not in page.url

        await page.get_by_test_id("order-input-token").select_option("SOL")
        await page.get_by_test_id("order-output-token").select_option("USDC")
        await page.get_by_test_id("order-amount").fill("1.5")
        await expect(page.get_by_test_id("order-slippage")).to_have_value("50")
        preview = page.get_by_test_id("quote-preview")
        await expect(preview.get_by_test_id("quote-venue-raydium")).to_be_visible()
        await expect(preview.get_by_test_id("quote-venue-meteora")).to_be_visible()
        await expect(preview.get_by_test_id("quote-expected")).to_contain_text("USDC")
        await expect(preview.get_by_test_id("quote-route")).to_contain_text("%")

        await page.evaluate(WATCH_STATUS_BADGES)
        await page.get_by_test_id("order-submit").click()
        submitted = page.get_by_test_id("order-submitted")
        await expect(submitted).to_be_visible()
        order_id = await submitted.get_attribute("data-order-id")
        assert order_id
        await expect(page.get_by_test_id(f"order-status-{order_id}")).to_have_text(
            "confirmed", timeout=TERMINAL_TIMEOUT_MS
        )
        order = await dashboard_stack.wait_terminal(order_id)
        row = page.get_by_test_id(f"order-row-{order_id}")
        await expect(row).to_contain_text("SOL → USDC")
        await expect(row).to_contain_text(order["amountOut"].split(".")[0])
        # The newest order is the first row.
        first = page.get_by_test_id("orders-table").locator("tbody tr").first
        await expect(first).to_have_attribute("data-testid", f"order-row-{order_id}")
        badge_texts = [
            text for testid, text in await page.evaluate("window.__statusTexts")
            if testid == f"order-status-{order_id}"
        ]
        await wait_for_panels(page)
        await page.screenshot(path=screenshots / "dashboard.png")

        await row.click()
        await expect(page).to_have_url(re.compile(f"#/orders/{order_id}$"))
        await expect(page.get_by_test_id("order-page")).to_be_visible()
        await expect_confirmed_order_page(page, order)
        await page.screenshot(path=screenshots / "order.png", full_page=True)

        # Back home: the table is still there, and still live.
        await page.get_by_test_id("back-home").click()
        await expect(page.get_by_test_id(f"order-row-{order_id}")).to_be_visible()

        yield OrderFlow(order_id, order, badge_texts, list_requests, console.messages)
    finally:
        await context.close()


async def test_an_order_from_the_form_to_its_page(
    order_flow: OrderFlow, browser: Browser, dashboard_stack: Stack
) -> None:
    # The row went through the lifecycle in place, live from the WebSocket.
    seen = order_flow.badge_texts
    assert seen[-1] == "confirmed"
    assert len(seen) >= 2, seen
    assert seen == sorted(seen, key=LIFECYCLE.index), seen
    # ...and nothing polled the list of orders to get there.
    assert order_flow.list_requests == []

    # A link straight to the order page (a fresh browser, the key in the URL) works too.
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        await open_dashboard(page, dashboard_stack, f"#/orders/{order_flow.order_id}")
        await expect_confirmed_order_page(page, order_flow.order)
    finally:
        await context.close()


async def test_no_console_errors_during_the_order_flow(order_flow: OrderFlow) -> None:
    assert order_flow.console_errors == []


async def test_a_failed_order_shows_its_reason_and_retries(
    browser: Browser, make_settings: Callable[..., Settings], screenshots: Path
) -> None:
    settings = make_settings(sim_failure_rate=1.0, max_attempts=2, retry_base_ms=20,
                             retry_max_ms=50)
    async with running_stack(settings) as stack:
        order_id = await stack.submit(inputToken="SOL", outputToken="USDC", amount="0.5")
        order = await stack.wait_terminal(order_id)
        assert order["status"] == "failed"

        context = await browser.new_context(viewport=DESKTOP)
        try:
            page = await context.new_page()
            await open_dashboard(page, stack, f"#/orders/{order_id}")
            await expect(page.get_by_test_id("order-page-status")).to_have_text("failed")
            reason = page.get_by_test_id("order-failure-reason")
            await expect(reason).to_contain_text("dropped")
            await expect(reason).to_contain_text("after 2 attempts")
            timeline = page.get_by_test_id("order-timeline")
            await expect(timeline.get_by_test_id("timeline-item-retrying")).to_have_count(1)
            await expect(timeline.get_by_test_id("timeline-item-retrying")).to_contain_text(
                "dropped"
            )
            await expect(timeline.get_by_test_id("timeline-item-failed")).to_have_count(1)
            await expect(page.get_by_test_id("order-retries")).to_contain_text("dropped")
            await page.screenshot(path=screenshots / "failed-order.png", full_page=True)
        finally:
            await context.close()


async def test_phone_width_and_dark_mode(
    browser: Browser, dashboard_stack: Stack, screenshots: Path
) -> None:
    await dashboard_stack.wait_terminal(await dashboard_stack.submit(amount="0.25"))

    phone = await browser.new_context(viewport=PHONE, device_scale_factor=2)
    try:
        page = await phone.new_page()
        await open_dashboard(page, dashboard_stack)
        await page.get_by_test_id("order-amount").fill("2")
        await expect(page.get_by_test_id("quote-venue-meteora")).to_be_visible()
        await wait_for_panels(page)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1
        await page.screenshot(path=screenshots / "phone.png", full_page=True)
    finally:
        await phone.close()

    dark = await browser.new_context(viewport=DESKTOP, color_scheme="dark")
    try:
        page = await dark.new_page()
        await open_dashboard(page, dashboard_stack)
        await page.get_by_test_id("order-amount").fill("3")
        await expect(page.get_by_test_id("quote-venue-meteora")).to_be_visible()
        await wait_for_panels(page)
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(v) for v in re.findall(r"\d+", background)[:3])
        assert red + green + blue < 3 * 64, background  # a dark page, not the light one
        await page.screenshot(path=screenshots / "dark.png")
    finally:
        await dark.close()


async def test_the_quote_preview_says_when_an_order_would_be_over_its_impact_limit(
    browser: Browser, dashboard_stack: Stack
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        await open_dashboard(page, dashboard_stack)
        await page.get_by_test_id("order-input-token").select_option("SOL")
        await page.get_by_test_id("order-output-token").select_option("USDC")
        impact = page.get_by_test_id("quote-preview").get_by_test_id("quote-impact")
        await page.get_by_test_id("order-amount").fill("1.5")
        await expect(impact).to_contain_text("%")
        await expect(impact).not_to_contain_text("limit")
        # A pool's worth of SOL: the order would fail on MAX_PRICE_IMPACT_BPS (5%).
        await page.get_by_test_id("order-amount").fill("1000000")
        await expect(impact).to_contain_text("over the 5.00% limit: an order would fail")
    finally:
        await context.close()


async def test_the_key_form_without_a_key_and_after_a_refused_key(
    browser: Browser, dashboard_stack: Stack
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        await page.goto(f"{dashboard_stack.base_url}/")
        key_input = page.get_by_test_id("api-key-input")
        await expect(key_input).to_be_visible()
        await expect(page.get_by_test_id("orders-table")).to_be_hidden()

        await key_input.fill("oe_not_a_real_key")
        async with page.expect_response(lambda r: r.status == 401):
            await page.get_by_test_id("api-key-save").click()
        await expect(key_input).to_be_visible()
        await expect(key_input).to_have_value("")
        await expect(page.get_by_test_id("orders-table")).to_be_hidden()
        assert await page.evaluate("localStorage.length") == 0

        # The right key opens the dashboard.
        await key_input.fill(API_KEY)
        await page.get_by_test_id("api-key-save").click()
        await expect(page.get_by_test_id("orders-table")).to_be_visible()
        await expect(page.get_by_test_id("live-state")).to_have_text("live")
    finally:
        await context.close()


async def test_a_link_with_another_key_does_not_replace_the_held_one(
    browser: Browser, dashboard_stack: Stack, screenshots: Path
) -> None:
    other, _ = await dashboard_stack.services.api_keys.create("browser-other")
    theirs = await dashboard_stack.submit(key=other, amount="0.3")
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        console = ConsoleErrors(page)
        referrers: list[str] = []
        page.on("request", lambda request: referrers.extend(
            v for k, v in request.headers.items() if k.lower() == "referer"))
        await open_dashboard(page, dashboard_stack)
        held = "localStorage.getItem('orderEngine.apiKey')"
        assert await page.evaluate(held) == API_KEY

        # Someone sends a link with their key: the dashboard keeps the key it holds.
        await page.goto(f"{dashboard_stack.base_url}/?apiKey={other}")
        notice = page.get_by_test_id("key-link-notice")
        await expect(notice).to_be_visible()
        await expect(notice).to_contain_text(API_KEY[:8])
        await expect(notice).to_contain_text(other[:8])
        await expect(notice).not_to_contain_text(other[:12])  # a hint, not the key
        assert "apiKey" not in page.url  # out of the address bar and the history
        assert await page.evaluate(held) == API_KEY
        await expect(page.get_by_test_id("orders-table")).to_be_visible()
        await expect(page.get_by_test_id("live-state")).to_have_text("live")
        await expect(page.get_by_test_id(f"order-row-{theirs}")).to_have_count(0)
        await page.screenshot(path=screenshots / "key-link-notice.png")
        await page.get_by_test_id("key-link-keep").click()
        await expect(notice).to_be_hidden()
        assert await page.evaluate(held) == API_KEY

        # Only by choosing it does the person switch to the link's key.
        await page.goto(f"{dashboard_stack.base_url}/?apiKey={other}")
        await page.get_by_test_id("key-link-use").click()
        await expect(notice).to_be_hidden()
        assert await page.evaluate(held) == other
        await expect(page.get_by_test_id(f"order-row-{theirs}")).to_be_visible()
        assert "apiKey" not in page.url
        # No request told anyone the address (with its ?apiKey=) as a referrer.
        assert [r for r in referrers if r] == []
        assert console.messages == []
    finally:
        await context.close()


async def test_the_api_docs_work_offline_under_their_csp(
    browser: Browser, dashboard_stack: Stack, screenshots: Path
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        console = ConsoleErrors(page)
        hosts: set[str] = set()
        page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
        await page.goto(f"{dashboard_stack.base_url}/docs")
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            "Order execution engine")
        await expect(page.locator(".opblock-summary-path", has_text="/api/orders/{order_id}")
                     .first).to_be_visible()
        await page.screenshot(path=screenshots / "docs.png")
        assert hosts == {dashboard_stack.base_url.split("/")[2]}  # nothing from elsewhere
        assert console.messages == []  # a CSP violation would be a console error
    finally:
        await context.close()


async def test_a_revoked_key_sends_the_dashboard_back_to_the_key_form(
    browser: Browser, dashboard_stack: Stack
) -> None:
    from order_engine.events import publish_revoked

    key, key_id = await dashboard_stack.services.api_keys.create("browser-revoked")
    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        await page.goto(f"{dashboard_stack.base_url}/?apiKey={key}")
        await expect(page.get_by_test_id("live-state")).to_have_text("live")
        # As `order-engine keys revoke` does: in the record, then announced.
        await dashboard_stack.services.api_keys.revoke(key_id)
        await publish_revoked(dashboard_stack.services.redis,
                              dashboard_stack.settings.redis_prefix, [key_id])
        await expect(page.get_by_test_id("api-key-input")).to_be_visible(timeout=5_000)
        await expect(page.locator("#key-message")).to_have_text(
            "That API key was revoked. Enter another key.")
        assert await page.evaluate("localStorage.length") == 0
    finally:
        await context.close()
