"""The browser chat for people who use a keyboard or a screen reader (headless Chromium, see test_browser):
the page's outline, an approval answered from the keyboard alone, contrast, and long values at 320 px."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent_host.emulator import Emulator
from tests.a11y import headings_in_order, low_contrast, outline, overflowing
from tests.host.helpers import balance

from .helpers import web_for
from .test_browser import ask, browser_page, playwright_api

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.anyio


LIVENESS = """(el) => { const region = el.closest("[aria-live], [role=status], [role=alert], [role=log], [role=timer]");
    return !region ? "off" : region.getAttribute("aria-live")
        || {status: "polite", alert: "assertive", log: "polite", timer: "off"}[region.getAttribute("role")]; }"""
"""How a screen reader announces changes of the element: its closest live region's politeness."""


async def focused(page: Page) -> str:
    """The focused element as `tag.class` ('body' when focus was lost), and its text if it is a heading."""
    result: str = await page.evaluate("""() => { const el = document.activeElement;
        const heading = /^H\\d$/.test(el.tagName) ? `: ${el.textContent}` : "";
        return `${el.tagName.toLowerCase()}.${el.className}${heading}`; }""")
    return result


async def test_the_chat_has_a_title_one_h1_landmarks_and_labels(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """The request box had only a placeholder (no label) and the form sat outside every landmark."""
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await ask(page, "Close ACC-003 and sweep to ACC-001.")
        await playwright_api.expect(page.locator(".approval input[name=confirmation]")).to_be_visible(timeout=30_000)
        found = await outline(page)
        live = await page.locator(".countdown").evaluate(LIVENESS)
    assert live == "off", "the card's countdown, ticking every second in the live log, was read out each second"
    assert found["lang"] == "en" and found["title"] == "bankgate · agent chat"
    assert headings_in_order(found["headings"]) and found["main"] == 1, found
    assert (found["unlabelled"], found["unnamed"], found["outside"]) == ([], [], [])


async def test_an_approval_from_the_keyboard_alone(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    """Focus went to the page's top when the card came (the request box it was on is disabled meanwhile):
    it goes to the card's heading, whence Tab reaches the note, then Approve."""
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await page.keyboard.press("Tab")
        assert await focused(page) == "input."
        await page.keyboard.type("Transfer $250 from ACC-001 to ACC-002.")
        await page.keyboard.press("Enter")
        card = page.locator(".approval").last
        await expect(card.locator("dd.amount")).to_have_text("250", timeout=30_000)
        assert await focused(page) == "h2.: Approval needed: transfer_funds"
        await page.keyboard.press("Tab")
        await page.keyboard.type("rent")
        await page.keyboard.press("Tab")
        assert await focused(page) == "button.approve"
        await page.keyboard.press("Enter")
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        await expect(page.locator("#request")).to_be_focused()
        assert await low_contrast(page) == []
        assert await balance(web.host, "ACC-002") == Decimal("500.00")


async def test_long_values_wrap_at_320_px(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    """A 140-character memo without spaces ran the tool line and the card's question off the screen."""
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await page.set_viewport_size({"width": 320, "height": 640})
        await ask(page, 'Transfer $250 from ACC-001 to ACC-002, memo "' + "m" * 140 + '".')
        card = page.locator(".approval").last
        await playwright_api.expect(card.locator("dd.amount")).to_have_text("250", timeout=30_000)
        assert await overflowing(page) == {"scroll": 320, "width": 320, "wide": []}
        box = await card.locator("button.approve").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 320
