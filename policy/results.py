"""What a gated call ends as: a status the model can rely on, and a sentence it can relay.

A human's decision is a result, not an error, so models do not retry a rejection; only a
business refusal (`failed`) is reported as an error, with a stable code.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    EXECUTED = "executed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DENIED = "denied"
    FAILED = "failed"
    PENDING_APPROVAL = "pending_approval"
    """Not an ending: the approval waits at the desk; the same call with its `approval_ref` continues it."""


class Refusal(Exception):
    """A business rule refused the call (unknown account, insufficient funds, ...).

    `code` is stable and machine-readable; `message` is a sentence a model can relay.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return error


@dataclass(frozen=True)
class GateResult:
    status: Status
    message: str
    approval_ref: str | None = None
    details: Mapping[str, Any] | None = None
    """The action's own output when executed."""
    error: Mapping[str, Any] | None = None
    """`{"code", "message"}` when failed."""

    @property
    def is_error(self) -> bool:
        return self.status is Status.FAILED

    def as_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),  # the value, as `.value` gives it, without its two calls
            "message": self.message,
            "approval_ref": self.approval_ref,
            "details": dict(self.details) if self.details is not None else None,
            "error": dict(self.error) if self.error is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "GateResult":
        return cls(
            status=Status(data["status"]),
            message=data["message"],
            approval_ref=data.get("approval_ref"),
            details=data.get("details"),
            error=data.get("error"),
        )

    @classmethod
    def refused(cls, refusal: Refusal, approval_ref: str | None = None) -> "GateResult":
        return cls(Status.FAILED, refusal.message, approval_ref, error=refusal.as_json())


def decision_message(tool: str, status: Status, reason: str = "") -> str:
    """The sentence for a call that did not execute, phrased so a model relays it rather than retries."""
    sentences = {
        Status.REJECTED: f"Action '{tool}' was rejected by the operator.",
        Status.CANCELLED: f"Action '{tool}' was cancelled by the operator.",
        Status.EXPIRED: f"Action '{tool}' expired.",
        Status.DENIED: f"Action '{tool}' was denied by policy.",
    }
    sentence = sentences.get(status, f"Action '{tool}' {status.value}.")
    return f"{sentence} {reason}".strip()
