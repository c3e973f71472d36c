"""The desk for approvers who use a keyboard or a screen reader, in headless Chromium (see test_desk_browser):
every page's outline, the decision made from the keyboard alone, errors announced where focus is, text
contrast, and long values that wrap at 320 px (a phone, or 200% zoom of a 640 px window)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.a11y import headings_in_order, outline
from tests.desk.test_desk_browser import anyio_backend, approver_page, chromium, desk
from tests.desk.world import World

pytestmark = pytest.mark.anyio
__all__ = ["anyio_backend", "chromium", "desk"]


async def pages_of(world: World, page: Any, desk: str) -> list[str]:
    """Every kind of desk page, enrolling erin on the way (`page` ends signed in): their paths."""
    closing = world.asked("close_account", "alice", account_id=world.source, sweep_to=world.target)
    token, _ = world.admin.add("erin")
    await page.goto(f"{desk}/enroll?token={token}")
    await page.click("#register")
    await page.wait_for_url(f"{desk}/")
    return [f"/enroll?token={token}", "/signin", "/", f"/approvals/{closing.ref}", "/history", "/approvals/APR-0"]


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
