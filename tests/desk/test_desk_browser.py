"""The desk in a real headless Chromium (Debian's, driven by Playwright with ``executable_path``), with a
WebAuthn virtual authenticator over CDP standing in for the approver's passkey.

The desk runs as beside stdio (`StdioDesk`: uvicorn on a loopback port). Screenshots of the inbox and
the detail page go to ``$BANKGATE_SCREENSHOTS`` (the README's: ``docs/screenshots``), else to the test's
temporary directory.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mcp_server.desk.decisions import decision_for
from mcp_server.desk.listeners import desk_listeners
from mcp_server.desk.server import StdioDesk
from tests.desk.world import World
from tests.support import another_origin

pytestmark = pytest.mark.anyio
CHROMIUM = shutil.which("chromium")
playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture
def desk(world: World) -> Iterator[str]:
    """The desk's URL, served on a free loopback port as `serve` does beside stdio."""
    settings = world.settings.model_copy(update={"desk_port": 0})
    served = StdioDesk(world.db, world.audit, settings, desk_listeners(settings))
    url = served.start()
    yield url.rstrip("/")
    served.stop()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so that the module's tests and its one browser share an event loop."""
    return "asyncio"


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    """One Chromium for the module; each test opens its own context (a fresh profile and authenticator)."""
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def approver_page(browser: Any) -> AsyncIterator[Any]:
    """A page in a fresh browser profile with its own virtual passkey authenticator (closed afterwards)."""
    context = await browser.new_context(viewport={"width": 1000, "height": 900})
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {"options": {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                     "hasUserVerification": True, "isUserVerified": True}},
    )  # fmt: skip
    try:
        yield page
    finally:
        await context.close()


async def enroll(world: World, page: Any, desk: str, name: str = "erin") -> None:
    token, _ = world.admin.add(name)
    await page.goto(world.config(int(urlsplit(desk).port or 0)).enrollment_url(token))
    await page.click("#register")
    await page.wait_for_url(f"{desk}/")


@asynccontextmanager
async def signed_in_at(browser: Any, world: World, desk: str, path: str) -> AsyncIterator[Any]:
    """A page of approver erin, enrolled just now in a fresh browser profile, opened at `path`."""
    async with approver_page(browser) as page:
        await enroll(world, page, desk)
        await page.goto(desk + path)
        yield page


async def post_from(page: Any, path: str, body: str, csrf: str | None = None) -> list[Any]:
    """[status, error code] of a same-origin POST made by the page's own script (its CSRF token unless `csrf`)."""
    script = """async ([path, body, csrf]) => { const r = await fetch(path, {method: "POST", body, headers: {
                  "Content-Type": "application/json", "X-CSRF-Token": csrf || document.body.dataset.csrf}});
                  return [r.status, (await r.json().catch(() => ({}))).error || null]; }"""
    result: list[Any] = await page.evaluate(script, [path, body, csrf])
    return result


async def decide(page: Any, verdict: str, note: str = "") -> None:
    if note:
        await page.fill("#note", note)
    await page.click(f"button[data-verdict={verdict}]")


async def test_enroll_sign_in_approve_and_reject(chromium: Any, world: World, desk: str, shots: Path) -> None:
    expect = playwright_api.expect
    rent = world.pending("1250.00", principal="alice", memo="March rent")
    supplier = world.pending("480.00", principal="payments-bot")
    async with approver_page(chromium) as page:
        await enroll(world, page, desk)
        await expect(page.locator(".inbox .item")).to_have_count(2)
        await expect(page.locator(".item").first).to_contain_text("$1,250.00")
        await page.screenshot(path=shots / "desk-inbox.png", full_page=True)

        await page.click("text=Sign out")
        await page.wait_for_url(f"{desk}/signin")
        await page.click("#signin")
        await page.wait_for_url(f"{desk}/")

        await page.goto(f"{desk}/approvals/{rent.ref}")
        await expect(page.locator("#question")).to_have_text(rent.question)
        await page.fill("#note", "rent is expected")
        await page.screenshot(path=shots / "desk-detail.png", full_page=True)
        await decide(page, "approved")
        await expect(page.locator(".decided")).to_contain_text("Approved by erin", timeout=15_000)

        await page.goto(f"{desk}/approvals/{supplier.ref}")
        await decide(page, "rejected", note="unknown supplier")
        await expect(page.locator(".decided")).to_contain_text("Rejected by erin", timeout=15_000)
        await page.goto(f"{desk}/history")
        await expect(page.locator(".history tbody tr")).to_have_count(2)

    verdicts = [world.db.read(partial(decision_for, ref=ref)) for ref in (rent.ref, supplier.ref)]
    assert [(d.verdict, d.note) for d in verdicts if d] == [
        ("approved", "rent is expected"),
        ("rejected", "unknown supplier"),
    ]


async def test_an_approval_link_opened_signed_out_leads_to_its_approval_once_signed_in(
    chromium: Any, world: World, desk: str
) -> None:
    """The link a client hands the approver names one approval: signed out, its own address asks them to sign in,
    then shows that approval to decide (it led to the sign-in page, then to the inbox, and the approval was lost)."""
    approval = world.pending("42.00")
    link = f"{desk}/approvals/{approval.ref}"
    async with approver_page(chromium) as page:
        await enroll(world, page, desk)
        await page.click("text=Sign out")
        await page.wait_for_url(f"{desk}/signin")
        await page.goto(link)
        await page.click("#signin")
        await playwright_api.expect(page.locator("#decide")).to_be_visible(timeout=15_000)
        assert page.url == link
        await decide(page, "approved")
        await playwright_api.expect(page.locator(".decided")).to_contain_text("Approved by erin", timeout=15_000)


async def test_an_approval_link_followed_from_another_site_leads_to_its_approval(
    chromium: Any, world: World, desk: str
) -> None:
    """Followed from a chat client's or a mail's page, the link arrives without the desk's SameSite=Strict cookies
    though the approver is signed in: the page loads itself once more from its own site, which sends them, and the
    approver is at its approval without signing in again (they had to, for every link a client handed them)."""
    approval = world.pending("42.00")
    link = f"{desk}/approvals/{approval.ref}"
    with another_origin(f'<a id="link" href="{link}">approve</a>', "127.0.0.1") as chat:
        async with approver_page(chromium) as page:
            await enroll(world, page, desk)
            await page.goto(chat)
            await page.click("#link")
            await playwright_api.expect(page.locator("#decide")).to_be_visible(timeout=15_000)
            assert page.url == link
            await page.click("text=Sign out")
            await page.wait_for_url(f"{desk}/signin")
            await page.goto(chat)
            await page.click("#link")  # signed out: the same link asks them to sign in, once, and leads on
            await playwright_api.expect(page.locator("#signin")).to_be_visible(timeout=15_000)
            await page.click("#signin")
            await playwright_api.expect(page.locator("#decide")).to_be_visible(timeout=15_000)
            assert page.url == link


async def test_a_form_only_approval_is_shown_but_cannot_be_signed(
    chromium: Any, world: World, desk: str, shots: Path
) -> None:
    """The policy lets only the requester's own form answer it: the page says so and offers no buttons."""
    approval = world.pending("75.00")
    world.sql("UPDATE approvals SET channel = 'form' WHERE ref = :r", r=approval.ref)
    async with signed_in_at(chromium, world, desk, f"/approvals/{approval.ref}") as page:
        await playwright_api.expect(page.locator("#form-only")).to_contain_text("requester's own form")
        await playwright_api.expect(page.locator("#decide")).to_have_count(0)
        await page.screenshot(path=shots / "desk-form-only.png", full_page=True)
        refused = await post_from(page, f"/desk/approvals/{approval.ref}/challenge", '{"verdict": "approved"}')
    assert refused == [409, "form_only"]


async def test_an_approvers_own_request_is_shown_but_cannot_be_signed(
    chromium: Any, world: World, desk: str, shots: Path
) -> None:
    """Four eyes: erin also calls tools as erin.k, so erin.k's request is hers to read, another's to decide."""
    approval = world.pending("75.00", principal="erin.k")
    async with signed_in_at(chromium, world, desk, "/") as page:
        world.admin.link("erin", "erin.k")
        await page.reload()
        await playwright_api.expect(page.locator(".inbox .own")).to_contain_text("another approver decides")
        await page.screenshot(path=shots / "desk-inbox-own-request.png", full_page=True)
        await page.goto(f"{desk}/approvals/{approval.ref}")
        await playwright_api.expect(page.locator("#own-request")).to_contain_text("another approver must decide")
        await playwright_api.expect(page.locator("#decide")).to_have_count(0)
        await page.screenshot(path=shots / "desk-own-request.png", full_page=True)
        refused = await post_from(page, f"/desk/approvals/{approval.ref}/challenge", '{"verdict": "approved"}')
    assert refused == [403, "own_request"]


async def test_a_yes_made_void_by_a_link_to_the_requester_is_shown_void(
    chromium: Any, world: World, desk: str, shots: Path
) -> None:
    """erin approves alice's request, then is linked to alice: her page said the requester could still continue it
    by a time; it now says the yes is void and nothing will run."""
    approval = world.pending("75.00", principal="alice")
    async with signed_in_at(chromium, world, desk, f"/approvals/{approval.ref}") as page:
        await decide(page, "approved")
        await playwright_api.expect(page.locator("#continue-by")).to_be_visible(timeout=15_000)
        world.admin.link("erin", "alice")
        await page.reload()
        await playwright_api.expect(page.locator("#void")).to_contain_text("who acts as the requester alice")
        await playwright_api.expect(page.locator("#void")).to_contain_text("nothing will run")
        await playwright_api.expect(page.locator("#continue-by")).to_have_count(0)
        await page.screenshot(path=shots / "desk-void-yes.png", full_page=True)


async def test_assertion_replayed_for_another_approval_is_refused(chromium: Any, world: World, desk: str) -> None:
    first, second = world.pending("10.00"), world.pending("20.00")
    captured: list[str] = []

    async def hold_back(route: Any) -> None:  # the signed decision never reaches the desk: an attacker keeps it
        captured.append(route.request.post_data)
        await route.abort()

    async with signed_in_at(chromium, world, desk, f"/approvals/{first.ref}") as page:
        await page.route("**/decide", hold_back)
        await decide(page, "approved")
        await playwright_api.expect(page.locator("#status.error")).to_be_visible(timeout=15_000)
        await page.unroute("**/decide")
        await page.goto(f"{desk}/approvals/{second.ref}")
        other = await post_from(page, f"/desk/approvals/{second.ref}/decide", captured[0])
        again = await post_from(page, f"/desk/approvals/{first.ref}/decide", captured[0])
    assert other == [403, "wrong_approval"]
    assert again == [409, "challenge_used"], "the refused replay used up the nonce"
    assert world.db.read(lambda conn: decision_for(conn, second.ref)) is None
    assert world.db.read(lambda conn: decision_for(conn, first.ref)) is None


async def test_signature_over_a_stale_question_is_refused(chromium: Any, world: World, desk: str) -> None:
    approval = world.pending("90.00")

    async def edit_then_send(route: Any) -> None:
        world.sql("UPDATE approvals SET question = :q WHERE ref = :r",
                  q=approval.question.replace("$90.00", "$9,000.00"), r=approval.ref)  # fmt: skip
        await route.continue_()

    async with signed_in_at(chromium, world, desk, f"/approvals/{approval.ref}") as page:
        await page.route("**/decide", edit_then_send)
        await decide(page, "approved")
        await playwright_api.expect(page.locator("#status")).to_contain_text(
            "changed after it was shown", timeout=15_000
        )
    assert world.db.read(lambda conn: decision_for(conn, approval.ref)) is None


async def test_csrf_and_cross_origin_posts_are_refused(chromium: Any, world: World, desk: str) -> None:
    approval = world.pending("60.00")
    forging = (f'<form id="f" method="post" action="{desk}/signout"><input name="csrf" value="guess"></form>'
               '<script>document.getElementById("f").submit()</script>')  # fmt: skip
    with another_origin(forging, "localhost") as attacker:
        async with signed_in_at(chromium, world, desk, f"/approvals/{approval.ref}") as page:
            forged = await post_from(
                page, f"/desk/approvals/{approval.ref}/challenge", '{"verdict": "approved"}', "0" * 64
            )
            assert forged == [403, None]
            other = await page.context.new_page()
            await other.goto(attacker)
            await playwright_api.expect(other.locator("body")).to_contain_text("Invalid Origin header")
            await page.goto(f"{desk}/")
            await playwright_api.expect(page.locator(".who")).to_have_text("erin"), "still signed in"
    assert world.rows("SELECT COUNT(*) AS n FROM desk_challenges WHERE purpose = 'decide'")[0].n == 0


async def test_markup_in_ledger_and_caller_values_is_shown_as_text(chromium: Any, world: World, desk: str) -> None:
    """An owner's name, a memo, the requester's name and an approver's note are the ledger's and the callers' words:
    every page shows them as written, and none becomes an element or runs (autoescaping, not the CSP alone)."""
    owner, memo = '<img src=x onerror="window.pwned=1">', "</pre><script>window.pwned=2</script>"
    target = world.state.ledger.create_account(owner).id
    approval = world.asked("transfer_funds", "alice", from_account=world.source, to_account=target,
                           amount="12.00", memo=memo)  # fmt: skip
    note = '"><svg onload="window.pwned=3">'
    async with signed_in_at(chromium, world, desk, f"/approvals/{approval.ref}") as page:
        await playwright_api.expect(page.locator("#question")).to_have_text(approval.question)
        assert owner in approval.question and memo in approval.question
        await decide(page, "rejected", note=note)
        await playwright_api.expect(page.locator(".decided")).to_contain_text(note, timeout=15_000)
        for path in ("/", f"/approvals/{approval.ref}", "/history"):
            await page.goto(desk + path)
            assert await page.evaluate("window.pwned") is None, path
            assert await page.locator("main img, main script, main svg").count() == 0, path
        await playwright_api.expect(page.locator(".history tbody")).to_contain_text(note)


async def test_an_enrollment_links_token_reaches_no_request_line_header_or_history(
    chromium: Any, world: World, desk: str
) -> None:
    """A reverse proxy or load balancer logs each request's line (query string and all) and often its Referer; the
    browser keeps the address in its history. The link's token makes an approver of whoever uses it first: it travels
    only in the POST bodies of the ceremony, and leaves the address bar once the page has read it."""
    token, _ = world.admin.add("erin")
    link = world.config(int(urlsplit(desk).port or 0)).enrollment_url(token)
    requests: list[Any] = []
    async with approver_page(chromium) as page:
        page.on("request", lambda request: requests.append(request))
        await page.goto(link)
        await page.wait_for_load_state("load")
        assert token not in page.url, "the link stays in the address bar and the history"
        await page.click("#register")
        await page.wait_for_url(f"{desk}/")
        await page.go_back()
        assert token not in page.url, "the history holds the live link"
        sent = [f"{request.url} {await request.all_headers()}" for request in requests]
        assert len(sent) >= 5 and [entry for entry in sent if token in entry] == []
    assert world.rows("SELECT status FROM desk_approvers WHERE name = 'erin'")[0].status == "active"


async def test_an_older_releases_enrollment_link_still_enrolls(chromium: Any, world: World, desk: str) -> None:
    """A link `approvers add` printed before the token moved to the fragment (`/enroll?token=`, valid for 15 minutes)
    opened a page that said it had no token, "open the link exactly as you received it", which the approver had. The
    page takes it from the query once, and out of the address as it does the fragment's."""
    token, _ = world.admin.add("erin")
    async with approver_page(chromium) as page:
        await page.goto(f"{desk}/enroll?token={token}")
        await page.wait_for_load_state("load")
        assert token not in page.url, "the history holds the live link"
        await page.click("#register")
        await page.wait_for_url(f"{desk}/")
    assert world.rows("SELECT status FROM desk_approvers WHERE name = 'erin'")[0].status == "active"
