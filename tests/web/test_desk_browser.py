"""A desk approval in the browser chat (headless Debian Chromium via Playwright): the card links to the
approval desk instead of showing a form, the approver signs the decision at the desk (its HTTP API,
with the software passkey of `tests/desk`), and the run continues when the person says so."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from agent_host.emulator import Emulator
from tests.host.desk_lab import DeskLab
from tests.host.helpers import balance, settings_for

from .helpers import web_for
from .test_browser import ask, browser_page, playwright_api, shots

pytestmark = pytest.mark.anyio
__all__ = ["shots"]


async def test_a_transfer_approved_at_the_desk(
    emulator: Emulator, tmp_path: Path, agent_name: str, shots: Path
) -> None:
    expect = playwright_api.expect
    lab = DeskLab.create(tmp_path)
    target = lab.target(settings_for(emulator, agent_name))
    async with (
        web_for(emulator, tmp_path, agent_name, target=target) as web,
        lab.approver() as (desk, passkey),
        browser_page(web.url + "/") as page,
    ):
        await ask(page, "Transfer $250 from ACC-001 to ACC-002.")
        card = page.locator(".approval.desk").last
        link = card.locator("a.desk-link")
        await expect(link).to_have_text("Approve at the desk", timeout=30_000)
        ref = await card.locator("dd.reference").inner_text()
        await expect(link).to_have_attribute("href", f"{lab.origin}/desk/approvals/{ref}")
        await expect(link).to_have_attribute("target", "_blank")
        await expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
        await expect(card.locator(".desk-url")).to_have_text(f"{lab.origin}/desk/approvals/{ref}")
        await expect(card.locator("dd.amount")).to_have_text("250")
        await expect(card.locator(".countdown")).to_contain_text("left")
        assert await card.locator("input").count() == 0, "no form: the decision is signed at the desk"
        assert await page.locator("#request").is_disabled(), "the chat waits for the decision"
        await page.screenshot(path=shots / "agui-desk-card.png")

        await card.locator("button.decided").click()
        await expect(card.locator(".outcome")).to_contain_text("has not decided yet", timeout=30_000)
        await expect(card.locator("h2")).to_be_focused()  # not lost with the disabled button
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")

        decided = await desk.decide(ref, "approved", passkey, note="rent")
        assert decided.status_code == 200, decided.text
        await card.locator("button.decided").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        await expect(page.locator(".bubble.assistant").last).to_contain_text("complete")
        # The card ends on what happened, not on "Checking the desk's decision…" with the run long over.
        await expect(card.locator(".outcome")).to_have_text("Decided at the desk: executed.")
        await page.screenshot(path=shots / "agui-desk-approved.png")
        assert await balance(web.host, "ACC-002") == Decimal("500.00")
