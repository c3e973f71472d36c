"""What a human decided about an approval, whatever protocol carried the answer."""

from dataclasses import dataclass
from enum import StrEnum


class VerdictKind(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    EXPIRE = "expire"
    UNDELIVERED = "undelivered"
    VOID = "void"
    """A desk yes whose approver may no longer give it (revoked, or linked to the requester, since signing)."""


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    detail: str = ""
    note: str | None = None
    approver: str | None = None
    """The desk approver who signed it; None for an answer through the client (a form)."""

    @property
    def signed(self) -> bool:
        """Whether an enrolled approver signed it at the desk."""
        return self.approver is not None


EXPIRED = Verdict(VerdictKind.EXPIRE, "No answer arrived in time.")
CLOCK_SET_BACK = Verdict(
    VerdictKind.EXPIRE,
    "The server's clock reads more than a minute before this question was asked (set back, or behind the server "
    "that asked it): how long it waited cannot be told, so it expired; nothing ran.",
)
UNDELIVERED = Verdict(VerdictKind.UNDELIVERED, "The question could not be put to a human.")
