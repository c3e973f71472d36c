"""Approval questions waiting for an AG-UI resume: one interrupt per question, answered at most once.

The MCP server's question is held here while the run is suspended (the protocol's interrupt
outcome); a resume on any later connection resolves it. An interrupt is answered once: a second
resume, a resume from another thread, an unknown id or a late one changes nothing and is refused
with a reason. Past its deadline an interrupt answers `cancel` itself, so a client that went
away never leaves a tool waiting and nothing runs without a resume.

A **desk approval** (the server sent a link to its approval desk instead of a form) is an
interrupt with reason `desk_approval_required`, no response schema and the link in
`metadata.approval_url`: the decision is signed at the desk, so a resume only says "I have decided
there, continue" (`resolved`, no payload) or "withdraw" (`cancelled`). While the desk has not
decided, the same interrupt (same id, same reference) is raised again with
`metadata.desk_status = "still_pending"`. Past its deadline a desk approval is still settled by the desk's
decision (a yes signed in time runs when continued within the approval's timeout from the decision), so a
`resolved` resume then is no answer but reads the rest of its run, the call's outcome with it (`follow`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import jsonschema
from ag_ui.core import Interrupt, ResumeEntry

from agent_host.approvers import Answer, Question

State = Literal["pending", "answered", "expired"]
DESK_REASON = "desk_approval_required"


class RunRefused(Exception):
    """A run or resume that cannot go ahead and changed nothing; `code` goes in the `RUN_ERROR`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PendingApproval:
    """One question the MCP server put, waiting for the client's resume."""

    id: str
    thread_id: str
    question: Question
    tool_call_id: str | None
    expires_at: datetime
    state: State = "pending"
    answer: Answer | None = None
    raised: int = 1
    """How often this interrupt was raised: a desk approval is raised again while the desk has not decided."""
    link_accepted: bool = False
    """The server holds the call open (2025-11-25) and was told the link was shown: no withdrawing it here."""
    followed: bool = False
    """A resume past the deadline reads the rest of its run (`follow`): granted once per raise."""
    settled: anyio.Event = field(default_factory=anyio.Event, repr=False)
    """Set when the tool call this approval belongs to has returned."""
    _answered: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def interrupt(self) -> Interrupt:
        """The protocol's interrupt: the server's exact text, its form (or desk link), the deadline."""
        question = self.question
        metadata: dict[str, Any] = {"tool": "bankgate"}
        if question.reference:
            metadata["reference"] = question.reference
        if question.confirmation_value:
            metadata["confirm"] = question.confirmation_value
        if question.url is not None:
            metadata |= {
                "channel": "desk",
                "approval_url": question.url,
                "desk_status": "still_pending" if self.raised > 1 else "waiting",
            }
        return Interrupt(
            id=self.id,
            reason=DESK_REASON if question.at_desk else "approval_required",
            message=question.message,
            tool_call_id=self.tool_call_id,
            response_schema=None if question.at_desk else dict(question.schema),
            expires_at=self.expires_at.isoformat().replace("+00:00", "Z"),
            metadata=metadata,
        )

    def raise_again(self, question: Question) -> None:
        """The desk has not decided yet: the same interrupt waits for another resume."""
        self.question = question
        self.raised += 1
        self.state = "pending"
        self.answer = None
        self.followed = False
        self._answered = anyio.Event()

    @property
    def overdue(self) -> bool:
        return datetime.now(UTC) >= self.expires_at

    async def wait(self) -> Answer:
        """The client's answer, or `cancel` once the deadline passes without one."""
        remaining = (self.expires_at - datetime.now(UTC)).total_seconds()
        with anyio.move_on_after(max(remaining, 0.0)):
            await self._answered.wait()
        if self.answer is None:
            self.state = "expired"
            self.answer = Answer("cancel", reason="the approval expired before the client resumed the run")
        return self.answer

    def close(self, reason: str) -> None:
        """Its tool call ended without this answer: nothing could use one, so a later resume is refused."""
        if self.state == "pending":
            self.state = "expired"
            self.answer = Answer("cancel", reason=reason, desk=self.question.at_desk)
            self._answered.set()

    def follow(self, entry: ResumeEntry) -> bool:
        """Whether `entry` reads the rest of this desk approval's run instead of answering it: a `resolved` resume
        once the host no longer waits for one (past the deadline, or its call or run ended). The host answered
        `cancel` itself then, and the server settles the call by the desk's decision, so only the run can tell
        whether it ran."""
        late = self.state == "expired" or (self.state == "pending" and self.overdue)
        if not late or self.followed or not self.question.at_desk or entry.status != "resolved":
            return False
        self.followed = entry.payload in (None, {})
        return self.followed

    def resolve(self, entry: ResumeEntry) -> None:
        """Apply a resume; raises `RunRefused` (changing nothing) when it cannot be applied."""
        if self.state == "answered":
            raise RunRefused("interrupt_answered", f"Interrupt {self.id} was already answered.")
        if self.state == "expired" or self.overdue:
            raise RunRefused("interrupt_expired", self._expired())
        if entry.status == "cancelled" and self.link_accepted:
            raise RunRefused(
                "desk_decision_pending",
                f"Approval {self.question.reference} waits at the desk and can no longer be withdrawn here; "
                "reject it at the desk, or let it expire.",
            )
        if entry.status == "cancelled":
            answer = Answer("cancel", reason="cancelled in the client", desk=self.question.at_desk)
        elif self.question.at_desk:
            answer = _desk_answer(entry.payload)
        else:
            answer = _answer_from(self.question, entry.payload)
        self.state = "answered"
        self.answer = answer
        self._answered.set()

    def _expired(self) -> str:
        if self.question.at_desk:  # the desk's decision settles the call, not this interrupt's deadline
            return (
                f"Interrupt {self.id} expired: the host no longer waits for an answer to it, and whether its call ran "
                "depends on the desk's decision (see the call's result)."
            )
        return f"Interrupt {self.id} expired; nothing was executed."


def _desk_answer(payload: Any) -> Answer:
    """`resolved` on a desk approval: the person says they decided at the desk (the server checks that)."""
    if payload not in (None, {}):
        raise RunRefused(
            "invalid_payload", "A desk approval's resume carries no payload: the decision is signed at the desk."
        )
    return Answer("accept", reason="the client says the desk has decided", desk=True)


def _answer_from(question: Question, payload: Any) -> Answer:
    """The form's answer, after checking the payload against the form's own schema and a yes's typed
    confirmation against the question's."""
    try:
        jsonschema.validate(payload, {**question.schema, "additionalProperties": False})
    except jsonschema.ValidationError as error:
        where = "/".join(map(str, error.absolute_path)) or "payload"
        raise RunRefused(
            "invalid_payload", f"The resume payload does not match the interrupt's response schema at {where}."
        ) from None
    wanted = question.confirmation_value
    if payload["approve"] is True and wanted is not None and payload.get("confirmation") != wanted:
        # The console asks again until the value is typed exactly; sent on, a typo would reject the approval.
        raise RunRefused(
            "invalid_payload",
            f"The confirmation does not match: type {wanted} exactly as the question shows; nothing was answered.",
        )
    return Answer(
        "accept",
        bool(payload["approve"]),
        payload.get("confirmation"),
        payload.get("note") or None,
        reason="answered in the web client",
    )


class InterruptStore:
    """The open interrupts of this server process, by id."""

    def __init__(self, window: float) -> None:
        self.window = window
        """Seconds a client has to resume at most (the server's own deadline, when known, may come first)."""
        self._pending: dict[str, PendingApproval] = {}

    def open(self, thread_id: str, question: Question, tool_call_id: str | None) -> PendingApproval:
        self._forget_old()
        expires_at = datetime.now(UTC) + timedelta(seconds=self.window)
        if question.deadline is not None:  # the server stops waiting then: a later answer could not count
            expires_at = min(expires_at, datetime.fromtimestamp(question.deadline, UTC))
        pending = PendingApproval(
            id=f"approval-{secrets.token_urlsafe(12)}",
            thread_id=thread_id,
            question=question,
            tool_call_id=tool_call_id,
            expires_at=expires_at,
        )
        self._pending[pending.id] = pending
        return pending

    def for_link(self, thread_id: str, url: str) -> PendingApproval | None:
        """This thread's interrupt for a desk link, to raise again while the desk has not decided."""
        for pending in self._pending.values():
            if pending.thread_id == thread_id and pending.question.url == url and pending.state == "answered":
                return pending
        return None

    def find(self, thread_id: str, entry: ResumeEntry) -> PendingApproval:
        """The interrupt `entry` names; unknown ids and other threads' ids are refused alike."""
        pending = self._pending.get(entry.interrupt_id)
        if pending is None or pending.thread_id != thread_id:
            raise RunRefused("unknown_interrupt", "The resume names no open interrupt of this thread.")
        return pending

    def _forget_old(self) -> None:
        """Drop interrupts one window past their deadline: a later resume of one is refused as unknown."""
        horizon = datetime.now(UTC) - timedelta(seconds=self.window)
        for stale in [key for key, pending in self._pending.items() if pending.expires_at < horizon]:
            del self._pending[stale]
