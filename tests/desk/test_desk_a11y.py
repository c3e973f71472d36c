"""The desk for approvers who use a keyboard or a screen reader, in headless Chromium (see test_desk_browser):
every page's outline, the decision made from the keyboard alone, errors announced where focus is, text
contrast, and long values that wrap at 320 px (a phone, or 200% zoom of a 640 px window)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_server.desk.decisions import decision_for
from tests.a11y import headings_in_order, low_contrast, outline, overflowing
from tests.desk.test_desk_browser import anyio_backend, approver_page, chromium, desk, playwright_api
from tests.desk.world import World

pytestmark = pytest.mark.anyio
__all__ = ["anyio_backend", "chromium", "desk"]


async def pages_of(world: World, page: Any, desk: str) -> list[str]:
    """Every kind of desk page, enrolling erin from the keyboard on the way (`page` ends signed in): their paths."""
    closing = world.asked("close_account", "alice", account_id=world.source, sweep_to=world.target)
    token, _ = world.admin.add("erin")
    await page.goto(f"{desk}/enroll#token={token}")
    await page.keyboard.press("Tab")  # the brand link, then the one button
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{desk}/")
    return ["/enroll", "/signin", "/", f"/approvals/{closing.ref}", "/history", "/approvals/APR-0"]


async def test_every_page_has_a_language_title_one_h1_landmarks_and_labels(
    chromium: Any, world: World, desk: str
) -> None:
    """The detail page had no h1 (its headline was a paragraph) and a title of the bare reference."""
    async with approver_page(chromium) as page:
        paths = await pages_of(world, page, desk)
        for path in paths:
            await page.goto(desk + path)
            found = await outline(page)
            assert found["lang"] == "en" and found["title"].endswith(" · bankgate"), (path, found)
            assert headings_in_order(found["headings"]), (path, found["headings"])
            assert found["main"] == 1 and found["unlabelled"] == [] and found["unnamed"] == [], (path, found)
            assert found["outside"] == [], (path, found["outside"])
        await page.goto(desk + paths[3])
        assert await page.title() == f"Approval {paths[3].rsplit('/', 1)[1]} · bankgate"


async def focused(page: Any) -> str:
    """The focused element as `tag#id.class` ('body' when focus was lost), and whether a focus ring shows."""
    result: str = await page.evaluate("""() => { const el = document.activeElement;
        const s = getComputedStyle(el); const ring = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0;
        return `${el.tagName.toLowerCase()}#${el.id}.${el.className}${ring ? "" : " (no focus ring)"}`; }""")
    return result


async def test_a_decision_from_the_keyboard_alone_with_its_error_announced_where_focus_is(
    chromium: Any, world: World, desk: str
) -> None:
    """Tab reaches the confirmation, the note, Approve and Reject, each with a focus ring. The first try's
    error (the network drops) took focus with the disabled button, to the page's top: it goes to the message."""
    closing = world.asked("close_account", "alice", account_id=world.source, sweep_to=world.target)
    failed: list[str] = []

    async def fail_once(route: Any) -> None:
        if failed:
            await route.continue_()
        else:
            failed.append(route.request.url)
            await route.abort()

    async with approver_page(chromium) as page:
        await pages_of(world, page, desk)
        await page.goto(f"{desk}/approvals/{closing.ref}")
        await page.route("**/challenge", fail_once)
        order: list[str] = []
        while not order or order[-1].startswith(("a#", "button#.link")):
            await page.keyboard.press("Tab")
            order.append(await focused(page))
        await page.keyboard.type(world.source)
        for _ in range(3):
            await page.keyboard.press("Tab")
            order.append(await focused(page))
        assert order[-4:] == ["input#confirmation.", "textarea#note.", "button#.approve", "button#.reject"], order
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Enter")
        await playwright_api.expect(page.locator("#status")).to_have_class("status error", timeout=15_000)
        assert await focused(page) == "p#status.status error", "focus moves to the error, not lost on the page"
        assert await page.locator("#status").get_attribute("role") in ("status", "alert")
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Shift+Tab")
        assert await focused(page) == "button#.approve"
        await page.keyboard.press("Enter")
        await playwright_api.expect(page.locator(".decided")).to_contain_text("Approved by erin", timeout=15_000)
    decided = world.db.read(lambda conn: decision_for(conn, closing.ref))
    assert decided is not None and decided.verdict == "approved"


async def test_long_unbroken_values_wrap_at_320_px(chromium: Any, world: World, desk: str) -> None:
    """A 256-character principal and 100-character owners stay on the screen, and so do the buttons."""
    principal = "p" * 256
    world.sql("UPDATE accounts SET owner = :o", o="O" * 100)
    closing = world.asked("close_account", principal, account_id=world.source, sweep_to=world.target)
    async with approver_page(chromium) as page:
        await pages_of(world, page, desk)
        await page.set_viewport_size({"width": 320, "height": 640})
        for path in ["/", f"/approvals/{closing.ref}"]:
            await page.goto(desk + path)
            assert await overflowing(page) == {"scroll": 320, "width": 320, "wide": []}, path
        for button in await page.locator("#decide button").all():
            box = await button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 320


async def test_text_contrast_meets_wcag_aa_and_verdicts_are_words(chromium: Any, world: World, desk: str) -> None:
    """Contrast computed from the CSS colours on every page, with a decision in the history and an error shown."""
    approved, rejected = world.pending("10.00"), world.pending("20.00")
    async with approver_page(chromium) as page:
        paths = await pages_of(world, page, desk)
        for approval, verdict in ((approved, "approved"), (rejected, "rejected")):
            await page.goto(f"{desk}/approvals/{approval.ref}")
            await page.click(f"button[data-verdict={verdict}]")
            await playwright_api.expect(page.locator(".decided")).to_be_visible(timeout=15_000)
        await page.goto(f"{desk}/history")
        await playwright_api.expect(page.locator(".verdict")).to_have_text(["rejected", "approved"])
        problems = {}
        for path in [*paths, f"/approvals/{approved.ref}"]:
            await page.goto(desk + path)
            problems[path] = await low_contrast(page)
        await page.goto(desk + paths[3])
        await page.evaluate(
            "() => { const s = document.getElementById('status'); s.textContent = 'x'; s.className = 'status error'; }"
        )
        problems["error"] = await low_contrast(page)
    assert {path: found for path, found in problems.items() if found} == {}
