"""The browser chat in a real headless Chromium (Debian's, driven by Playwright with ``executable_path``).

Screenshots go to ``$BANKGATE_SCREENSHOTS`` (the README's are made with ``docs/screenshots``), else
to the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx2
import pytest

from agent_host.emulator import Emulator, FaultConfig
from tests.host.helpers import balance
from tests.support import another_origin

from .helpers import run, run_input, tool_results, web_for

if TYPE_CHECKING:
    from playwright.async_api import APIResponse, Page, Route

pytestmark = pytest.mark.anyio
CHROMIUM = shutil.which("chromium")
playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BANKGATE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@asynccontextmanager
async def browser_page(url: str, before: str | None = None) -> AsyncIterator[Page]:
    """A page at `url`; `before`: a script run in it before the page's own."""
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 900, "height": 1000})
        if before is not None:
            await page.add_init_script(before)
        await page.goto(url)
        try:
            yield page
        finally:
            await browser.close()


async def ask(page: Page, text: str) -> None:
    await page.fill("#request", text)
    await page.click("#send")


async def test_balance_approve_reject_and_typed_close(
    emulator: Emulator, tmp_path: Path, agent_name: str, shots: Path
) -> None:
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await ask(page, "What is the balance of ACC-001?")
        await expect(page.locator(".bubble.assistant").last).to_contain_text("5,000.00", timeout=30_000)
        await expect(page.locator(".tool .status").last).to_have_text("executed")
        await page.screenshot(path=shots / "agui-balance.png")

        await ask(page, 'Transfer $250 from ACC-001 to ACC-002, memo "March rent".')
        card = page.locator(".approval").last
        await expect(card).to_contain_text("Approval required: transfer_funds", timeout=30_000)
        await expect(card.locator("dd.amount")).to_have_text("250")
        await expect(card.locator("dd.from_account")).to_have_text("ACC-001")
        await expect(card.locator("dd.to_account")).to_have_text("ACC-002")
        await expect(card.locator(".countdown")).to_contain_text("left")
        assert await page.locator("#request").is_disabled(), "the chat waits for the decision"
        await card.locator("input[name=note]").fill("rent is expected")
        await page.screenshot(path=shots / "agui-approval-card.png")
        await card.locator("button.approve").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        await expect(page.locator(".bubble.assistant").last).to_contain_text("complete")
        await page.screenshot(path=shots / "agui-transfer-approved.png")
        assert await balance(web.host, "ACC-002") == Decimal("500.00")

        await ask(page, "Transfer $300 from ACC-002 to ACC-003.")
        card = page.locator(".approval").last
        await expect(card.locator("dd.amount")).to_have_text("300", timeout=30_000)
        await card.locator("input[name=note]").fill("not authorised")
        await card.locator("button.reject").click()
        await expect(page.locator(".tool .status").last).to_have_text("rejected", timeout=30_000)
        await page.screenshot(path=shots / "agui-transfer-rejected.png")

        await ask(page, "Close ACC-003 and sweep to ACC-001.")
        card = page.locator(".approval").last
        confirmation = card.locator("input[name=confirmation]")
        await expect(card).to_contain_text("Type ACC-003 to confirm", timeout=30_000)
        await confirmation.fill("ACC-003")
        await card.screenshot(path=shots / "agui-close-confirmation.png")
        await card.locator("button.approve").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        await page.screenshot(path=shots / "agui-close-executed.png", full_page=True)

        amounts = [await balance(web.host, account) for account in ("ACC-001", "ACC-002")]
        assert amounts == [Decimal("4870.00"), Decimal("500.00")], "the closure swept ACC-003's 120 to ACC-001"


async def test_a_deadline_passing_in_the_card(emulator: Emulator, tmp_path: Path, agent_name: str, shots: Path) -> None:
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name, window=3.0) as web, browser_page(web.url + "/") as page:
        await ask(page, "Transfer $40 from ACC-001 to ACC-003.")
        card = page.locator(".approval").last
        await expect(card.locator(".outcome")).to_contain_text("Expired", timeout=30_000)
        assert await card.locator("button.approve").is_disabled()
        await page.screenshot(path=shots / "agui-expired.png")
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")
        # The chat is usable again once the window has closed.
        await expect(page.locator("#request")).to_be_enabled()


@pytest.mark.parametrize("path", ["/", "/static/index.html"])
async def test_a_foreign_page_cannot_frame_the_chat(
    emulator: Emulator, tmp_path: Path, agent_name: str, path: str
) -> None:
    # Framed under a decoy, the chat's Approve button could be clicked by a user who thinks they
    # click something else (clickjacking): the page refuses to be framed at all, under any address
    # that serves it (the static files' folder holds it too).
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page("about:blank") as page:
        with another_origin(
            f'<iframe src="{web.url}{path}" width="800" height="600"></iframe>', "127.0.0.1"
        ) as attacker:
            await page.goto(attacker)
            await page.wait_for_timeout(1500)
            [frame] = [frame for frame in page.frames if frame != page.main_frame]
            assert await frame.query_selector("#request") is None, "the chat loaded inside a foreign page"
        direct = await page.goto(f"{web.url}/")
        assert direct is not None and direct.ok and await page.query_selector("#request") is not None


async def test_a_mistyped_confirmation_leaves_the_card_open(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await ask(page, "Close ACC-003 and sweep to ACC-001.")
        card = page.locator(".approval").last
        confirmation = card.locator("input[name=confirmation]")
        await expect(card).to_contain_text("Type ACC-003 to confirm", timeout=30_000)
        await confirmation.fill("ACC-03")
        await card.locator("button.approve").click()
        await expect(card.locator(".outcome")).to_contain_text("does not match", timeout=30_000)
        await expect(confirmation).to_be_enabled()
        await expect(confirmation).to_be_focused()
        await expect(card.locator(".countdown")).to_contain_text("left")
        assert await page.locator("#request").is_disabled(), "the question is still open"
        assert await balance(web.host, "ACC-003") == Decimal("120.00")

        await confirmation.fill(" ACC-003 ")  # pasted with spaces: trimmed, as the console does
        await card.locator("button.approve").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        assert await balance(web.host, "ACC-001") == Decimal("5120.00")


async def test_an_answer_the_host_refuses_is_not_shown_as_given(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # Another client (a second tab, a script with the thread id) answered first: this card's answer never counted.
    expect = playwright_api.expect
    async with (
        web_for(emulator, tmp_path, agent_name) as web,
        browser_page(web.url + "/") as page,
        httpx2.AsyncClient(timeout=60) as client,
    ):
        await ask(page, "Transfer $40 from ACC-001 to ACC-003.")
        card = page.locator(".approval").last
        await expect(card.locator("dd.amount")).to_have_text("40", timeout=30_000)
        [(thread_id, thread)] = web.driver._threads.items()
        assert thread.pending is not None
        resume = [{"interruptId": thread.pending.id, "status": "resolved", "payload": {"approve": False}}]
        assert tool_results(await run(client, web.url, run_input(thread_id, resume=resume)))[0]["status"] == "rejected"

        await card.locator("button.approve").click()
        await expect(card.locator(".outcome")).to_contain_text("already answered", timeout=30_000)
        await expect(card.locator(".outcome")).not_to_contain_text("You approved")
        await expect(page.locator("#request")).to_be_enabled()
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")


async def test_a_question_whose_stream_was_lost_is_shown_on_the_next_message(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        dropped: list[APIResponse] = []

        async def drop_first(route: Route) -> None:
            if dropped:
                await route.continue_()
                return
            dropped.append(await route.fetch())  # the server runs to its question; the page never gets it
            await route.abort("connectionreset")

        await page.route("**/agent", drop_first)
        await ask(page, "Transfer $40 from ACC-001 to ACC-003.")
        await expect(page.locator(".bubble.error").last).to_contain_text("Connection problem", timeout=30_000)
        assert await page.locator(".approval").count() == 0

        await ask(page, "Hello?")
        card = page.locator(".approval").last
        await expect(card).to_contain_text("Transfer $40.00 (USD) from ACC-001", timeout=30_000)
        await expect(page.locator(".bubble.error").last).to_contain_text("your message was not sent")
        await card.locator("button.approve").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        assert await balance(web.host, "ACC-001") == Decimal("4960.00")


async def test_a_transfer_whose_stream_was_lost_is_shown_after_reconnecting(
    emulator: Emulator, tmp_path: Path, agent_name: str, shots: Path
) -> None:
    # The approval reaches the server and the transfer executes, but the page's stream is cut before the result:
    # before, the page only said its outcome was not shown, and the next message threw that outcome away.
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await ask(page, "Transfer $40 from ACC-001 to ACC-003.")
        card = page.locator(".approval").last
        await expect(card.locator("dd.amount")).to_have_text("40", timeout=30_000)
        emulator.faults.arm(FaultConfig(delay=1.5, target="responses"))  # the reply comes after the cut, always

        async def cut(route: Route) -> None:
            with contextlib.suppress(playwright_api.Error):  # the resume is sent, its stream cut after 0.5 s
                await route.fetch(timeout=500)
            await route.abort("connectionreset")

        await page.route("**/agent", cut)
        await card.locator("button.approve").click()
        await expect(page.locator(".bubble.error").last).to_contain_text("Connection problem", timeout=30_000)
        await page.unroute("**/agent")
        [thread] = web.driver._threads.values()
        with anyio.fail_after(30):
            while thread.active:
                await anyio.sleep(0.05)
        emulator.faults.arm(FaultConfig())
        assert await balance(web.host, "ACC-001") == Decimal("4960.00")

        await ask(page, "What is the balance of ACC-003?")
        missed = page.locator(".missed")
        await expect(missed.locator("h2")).to_have_text("While you were disconnected", timeout=30_000)
        await expect(missed.locator(".tool .status")).to_have_text("executed")
        await expect(missed.locator(".tool .result")).to_contain_text("40")
        await expect(missed.locator(".bubble.assistant")).to_contain_text("complete")
        await expect(page.locator(".bubble.assistant").last).to_contain_text("160.00")
        assert await page.locator(".missed .bubble.assistant").count() == 1, "the new run's reply is not in it"
        await page.screenshot(path=shots / "agui-missed.png")


async def test_a_stream_that_ends_mid_run_is_reported(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    # A proxy closing an idle stream, or a newer run taking the thread's stream over, ends it without
    # RUN_FINISHED or RUN_ERROR: the page must not look as if the run finished quietly.
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        started = 'data: {"type":"RUN_STARTED","threadId":"t","runId":"r"}\n\n'
        await page.route("**/agent", lambda route: route.fulfill(content_type="text/event-stream", body=started))
        await ask(page, "What is the balance of ACC-001?")
        await expect(page.locator(".bubble.error")).to_contain_text("ended before the run finished", timeout=30_000)
        await expect(page.locator("#request")).to_be_enabled()


async def test_the_countdown_follows_the_servers_clock(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    # A computer whose clock runs 10 minutes ahead showed every card expired at once, the question still open.
    expect = playwright_api.expect
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await page.clock.install(time=time.time() + 600)
        await ask(page, "Transfer $40 from ACC-001 to ACC-003.")
        card = page.locator(".approval").last
        await expect(card.locator(".countdown")).to_have_text(re.compile(r"^0:5\d left$"), timeout=30_000)
        await expect(card.locator(".outcome")).to_have_text("")
        await card.locator("button.approve").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        assert await balance(web.host, "ACC-001") == Decimal("4960.00")


async def test_a_cross_site_text_plain_form_cannot_start_a_run(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # A form needs no CORS preflight; its text/plain body can be made valid JSON (name + "=" + value). Chromium
    # sends the form's Origin, which the guard refuses. Pins a promise not tested in a browser before (it held).
    head = '{"threadId":"csrf","runId":"r","messages":[{"id":"m","role":"user","content":"Transfer $40 from ACC-001 '
    head += 'to ACC-003."}],"tools":[],"context":[],"state":{},"forwardedProps":{"pad":"'
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page("about:blank") as page:
        form = (
            f"<form method=POST action='{web.url}/agent' enctype=text/plain><input type=hidden name='{head}' "
            """value='"}}'></form><script>document.forms[0].submit()</script>"""
        )
        with another_origin(form, "127.0.0.1") as attacker:
            await page.goto(attacker)
            await page.wait_for_load_state()
            await page.wait_for_timeout(1500)
        assert "Refused: requests from another origin" in await page.content()
        assert "csrf" not in web.driver._threads
        async with httpx2.AsyncClient(timeout=60) as client:  # the same body, without a browser's Origin, is a run
            same = await client.post(
                f"{web.url}/agent", content=f'{head}="}}}}', headers={"Content-Type": "text/plain"}
            )
            assert same.status_code == 200 and "RUN_FINISHED" in same.text


async def test_markup_in_a_memo_is_shown_as_text_and_never_runs(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # The memo is the user's (or a prompt injection's) text: it reaches the page in the tool call's arguments, the
    # server's question and the model's reply. Pins a promise not tested in a browser before (it held).
    expect = playwright_api.expect
    markup = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url + "/") as page:
        await ask(page, f"Transfer $5 from ACC-001 to ACC-002, memo '{markup}'")
        card = page.locator(".approval").last
        await expect(card.locator("dd.amount")).to_have_text("5", timeout=30_000)
        await expect(page.locator(".tool .args").last).to_contain_text(markup.replace('"', '\\"'))
        await card.locator("button.approve").click()
        await expect(page.locator(".tool .status").last).to_have_text("executed", timeout=30_000)
        assert await page.locator("#log img, #log script").count() == 0
        assert await page.evaluate("window.pwned") is None


async def test_the_token_leaves_the_address_bar_and_still_serves_the_tab(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """The token comes in the address's fragment; left there it stays in the history and in every link copied
    from the tab. The page takes it out at once and keeps it for this tab (a reload included)."""
    expect = playwright_api.expect
    async with (
        web_for(emulator, tmp_path, agent_name, token="s3cret-token") as web,
        browser_page(f"{web.url}/#token=s3cret-token") as page,
    ):
        assert "s3cret" not in page.url
        await page.reload()
        assert "s3cret" not in page.url
        await ask(page, "What is the balance of ACC-001?")
        await expect(page.locator(".bubble.assistant").last).to_contain_text("5,000.00", timeout=30_000)


async def test_a_page_outside_a_secure_context_still_makes_unguessable_thread_ids(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """`crypto.randomUUID` exists only in a secure context (https, loopback); served over plain http elsewhere,
    the page made its thread id, all that tells one browser's conversation from another's under one token, from
    the clock and Math.random. It now draws 128 bits from `crypto.getRandomValues` there."""
    insecure = "delete Crypto.prototype.randomUUID; Math.random = () => 0.5;"  # as plain http; a guessable generator
    async with web_for(emulator, tmp_path, agent_name) as web, browser_page(web.url, before=insecure) as page:
        async with page.expect_request("**/agent") as sent:
            await ask(page, "What is the balance of ACC-001?")
        body = (await sent.value).post_data_json
    assert isinstance(body, dict), body
    assert re.fullmatch(r"thread-[0-9a-f]{32}", body["threadId"]), body["threadId"]
    assert re.fullmatch(r"run-[0-9a-f]{32}", body["runId"]), body["runId"]
