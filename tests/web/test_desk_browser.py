"""A desk approval in the browser chat (headless Debian Chromium via Playwright): the card links to the
approval desk instead of showing a form, the approver signs the decision at the desk (its HTTP API,
with the software passkey of `tests/desk`), and the run continues when the person says so."""

from __future__ import annotations

import re
from dataclasses import replace
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


async def test_a_desk_yes_signed_near_the_deadline_ends_the_card_on_what_ran(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # The yes may be continued for the approval's timeout from the decision, so the call runs after the countdown
    # ends. The card said at zero "Expired: the desk did not decide in time and nothing was executed." while the
    # transfer ran; it now says the deadline passed and it checks, then what the server reported.
    expect = playwright_api.expect
    lab = DeskLab.create(tmp_path)
    target = lab.target(settings_for(emulator, agent_name, approval_timeout=8.0))
    target = replace(target, server_env={**lab.env, "BANKGATE_APPROVAL_TIMEOUT": "8"})
    async with (
        web_for(emulator, tmp_path, agent_name, target=target, approval_timeout=8.0) as web,
        lab.approver() as (desk, passkey),
        browser_page(web.url + "/") as page,
    ):
        await ask(page, "Transfer $250 from ACC-001 to ACC-002.")
        card = page.locator(".approval.desk").last
        await expect(card.locator("dd.reference")).to_have_text(re.compile("APR-"), timeout=30_000)
        await card.locator(".outcome").evaluate(
            """(outcome) => {
                window.outcomes = [];
                new MutationObserver(() => window.outcomes.push(outcome.textContent))
                    .observe(outcome, { childList: true, characterData: true, subtree: true });
            }"""
        )
        await expect(card.locator(".countdown")).to_have_text("0:02 left", timeout=10_000)
        decided = await desk.decide(await card.locator("dd.reference").inner_text(), "approved", passkey)
        assert decided.status_code == 200, decided.text

        await expect(card.locator(".outcome")).to_have_text("Decided at the desk: executed.", timeout=30_000)
        await expect(page.locator(".tool .status").last).to_have_text("executed")
        shown = await page.evaluate("window.outcomes")
        assert "The deadline passed; checking the desk's decision…" in shown, shown
        assert not any("did not decide" in text or "nothing was executed" in text for text in shown), shown
        assert await balance(web.host, "ACC-002") == Decimal("500.00")
