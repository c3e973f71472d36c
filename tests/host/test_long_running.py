"""What the host keeps per question stays bounded: a web host answers questions for months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mcp_types
import pytest

from agent_host.approvers import LINK_GRACE_SECONDS, RECORDS_KEPT, ApprovalDesk, DenyApprover
from agent_host.foundry.pending_keys import PendingKeys

from .helpers import CapturedDisplay

LINKS = 2000


@pytest.mark.anyio
async def test_desk_links_and_answers_are_forgotten_once_their_deadline_is_long_past() -> None:
    """Each of 2,000 desk links is shown and withdrawn (a web user closing the chat); a question dated from its
    arrival goes by its deadline and a grace, and only the latest answers are kept for a report."""
    now = [1_767_225_600.0]
    desk = ApprovalDesk(DenyApprover(), CapturedDisplay(), approval_timeout=300.0, clock=lambda: now[0])
    for n in range(LINKS):
        link = mcp_types.ElicitRequestURLParams(message="Approve at the desk.", url=f"https://desk/a/APR-{n:010X}")
        answer = await desk(None, link)  # type: ignore[arg-type]  # (the context is unused)
        assert isinstance(answer, mcp_types.ElicitResult) and answer.action == "decline"
        now[0] += 1.0
    assert len(desk.records) == RECORDS_KEPT, "the latest answers only"
    assert len(desk._links) == len(desk._given_up) < 400, "links whose deadline and grace passed are forgotten"
    last = desk.records[-1][0]
    assert last.url == f"https://desk/a/APR-{LINKS - 1:010X}" and last.url in desk._given_up, "the latest stays"


def test_pending_approvals_the_model_never_continues_are_forgotten_after_their_deadline() -> None:
    """The key of each `pending_approval` is kept for the model's call continuing it; 2,000 the model dropped (long
    expired) leave nothing behind, and the one still pending keeps its key."""
    keys = PendingKeys()
    past = datetime.now(UTC) - timedelta(seconds=LINK_GRACE_SECONDS + 1)
    for n in range(LINKS):
        keys.note(f"call-{n}", pending(f"APR-{n:010X}", past))
    keys.note("call-live", pending("APR-LIVE", datetime.now(UTC) + timedelta(minutes=5)))
    assert keys._keys.keys() == {"APR-LIVE"}
    assert keys.key("call-again", "APR-LIVE") == "call-live"


def pending(ref: str, expires: datetime) -> dict[str, str]:
    return {"status": "pending_approval", "approval_ref": ref, "expires_at": expires.isoformat()}
