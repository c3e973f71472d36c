"""Approval questions waiting for an AG-UI resume: one interrupt per question, answered at most once.

The MCP server's question is held here while the run is suspended (the protocol's interrupt
outcome); a resume on any later connection resolves it. An interrupt is answered once: a second
resume, a resume from another thread, an unknown id or a late one changes nothing and is refused
with a reason. Past its deadline an interrupt answers `cancel` itself, so a client that went
away never leaves a tool waiting and nothing runs without a resume.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import jsonschema
from ag_ui.core import Interrupt, ResumeEntry

from agent_host.approvers import Answer, Question

_REFERENCE = re.compile(r"^Reference: (\S+)$", re.MULTILINE)

State = Literal["pending", "answered", "expired"]


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
    _answered: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def interrupt(self) -> Interrupt:
        """The protocol's interrupt: the server's exact text, its form as the response schema, the deadline."""
        metadata: dict[str, Any] = {"tool": "bankgate"}
        reference = _REFERENCE.search(self.question.message)
        if reference:
            metadata["reference"] = reference.group(1)
        if self.question.confirmation_value:
            metadata["confirm"] = self.question.confirmation_value
        return Interrupt(
            id=self.id,
            reason="approval_required",
            message=self.question.message,
            tool_call_id=self.tool_call_id,
            response_schema=dict(self.question.schema),
            expires_at=self.expires_at.isoformat().replace("+00:00", "Z"),
            metadata=metadata,
        )

    async def wait(self) -> Answer:
        """The client's answer, or `cancel` once the deadline passes without one."""
        remaining = (self.expires_at - datetime.now(UTC)).total_seconds()
        with anyio.move_on_after(max(remaining, 0.0)):
            await self._answered.wait()
        if self.answer is None:
            self.state = "expired"
            self.answer = Answer("cancel", reason="the approval expired before the client resumed the run")
        return self.answer

    def resolve(self, entry: ResumeEntry) -> None:
        """Apply a resume; raises `RunRefused` (changing nothing) when it cannot be applied."""
        if self.state == "answered":
            raise RunRefused("interrupt_answered", f"Interrupt {self.id} was already answered.")
        if self.state == "expired" or datetime.now(UTC) >= self.expires_at:
            raise RunRefused("interrupt_expired", f"Interrupt {self.id} expired; nothing was executed.")
        answer = Answer("cancel", reason="cancelled in the client") if entry.status == "cancelled" else None
        if answer is None:
            answer = _answer_from(self.question, entry.payload)
        self.state = "answered"
        self.answer = answer
        self._answered.set()


def _answer_from(question: Question, payload: Any) -> Answer:
    """The form's answer, after checking the payload against the form's own schema."""
    try:
        jsonschema.validate(payload, {**question.schema, "additionalProperties": False})
    except jsonschema.ValidationError as error:
        where = "/".join(map(str, error.absolute_path)) or "payload"
        raise RunRefused(
            "invalid_payload", f"The resume payload does not match the interrupt's response schema at {where}."
        ) from None
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
        """Seconds a client has to resume (the host's side of the approval deadline)."""
        self._pending: dict[str, PendingApproval] = {}

    def open(self, thread_id: str, question: Question, tool_call_id: str | None) -> PendingApproval:
        self._forget_old()
        pending = PendingApproval(
            id=f"approval-{secrets.token_urlsafe(12)}",
            thread_id=thread_id,
            question=question,
            tool_call_id=tool_call_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=self.window),
        )
        self._pending[pending.id] = pending
        return pending

    def resolve(self, thread_id: str, entry: ResumeEntry) -> PendingApproval:
        """The interrupt `entry` answers, resolved; unknown ids and other threads' ids are refused alike."""
        pending = self._pending.get(entry.interrupt_id)
        if pending is None or pending.thread_id != thread_id:
            raise RunRefused("unknown_interrupt", "The resume names no open interrupt of this thread.")
        pending.resolve(entry)
        return pending

    def _forget_old(self) -> None:
        """Drop interrupts one window past their deadline: a later resume of one is refused as unknown."""
        horizon = datetime.now(UTC) - timedelta(seconds=self.window)
        for stale in [key for key, pending in self._pending.items() if pending.expires_at < horizon]:
            del self._pending[stale]
