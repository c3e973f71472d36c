"""`bankgate-mcp admin approvals`: the approvals as stored, newest first, for an operator to watch.

Read-only, on a ledger servers may be serving: one statement, no transaction, nothing migrated. Every value
shown came from a caller (arguments, principal, an approver's note) or may have been edited in the database,
so each is escaped for the terminal (`free_text.shown`; `--json` escapes everything past ASCII), and a column
that no longer parses is shown as stored rather than stopping the listing.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from mcp_server.audit.reader import parsed_or_stored, shown_call
from mcp_server.ledger.free_text import shown
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import LINKED
from mcp_server.timestamps import format_timestamp
from policy.approval_states import SETTLED, ApprovalState
from policy.channel import DEFAULT_CHANNEL
from policy.question import deadline_text, span_text, stated_effect
from policy.store import asked_by, void_yes

AT_DESK = ApprovalState.APPROVED.value
"""`--status approved`: pending approvals a desk approver said yes to, whose caller has not continued. `approved`
is never stored (a yes settles as what came of it); the expiry sweep leaves these pending until their window to be
continued (`Approval.continue_by`) and its grace have passed, but for a void one (`DeskSignoff.void`), which its next
sweep ends."""
STATUSES = ("all", ApprovalState.PENDING.value, AT_DESK, *sorted(SETTLED))
"""What `--status` accepts: every stored status, `approved` (above) and `all`."""

_SELECT = (
    "SELECT a.ref, a.status, a.tool, a.arguments_json, a.question, a.principal, a.created_at, a.expires_at, a.channel,"
    " a.decided_at, a.note, a.outcome_json, d.approver, d.verdict, d.decided_at AS desk_at, d.note AS desk_note,"
    " d.binding = a.binding AS desk_binds, s.status AS approver_status, "
    + LINKED.format(approver="d.approver", principal="a.principal")
    + " AS approver_linked FROM approvals a LEFT JOIN desk_decisions d ON d.approval_ref = a.ref"
    " LEFT JOIN desk_approvers s ON s.name = d.approver"
)
"""With the approver's standing as a settlement now would read it (`SqlGateTx.desk_decision`): whether a yes is void."""
_YES_AT_DESK = "a.status = 'pending' AND d.verdict = 'approved' AND d.binding = a.binding"
"""The expiry sweep's test (`gate_store._OVERDUE`) of a desk yes it leaves to the caller, but for its window."""
_SET_BACK = (
    "over: this clock reads more than a minute before it was asked (set back, or behind the server that asked), "
    "so it takes no answer and the expiry sweep ends it expired"
)
"""What a pending approval `clock_set_back` says in place of its time left (`Approval.set_back`)."""


@dataclass(frozen=True)
class DeskMark:
    """An approver's signed decision on the approval, as the desk stored it."""

    approver: str
    verdict: str
    decided_at: float | None
    note: str | None
    binds: bool
    """Signed over the approval's binding as stored: else the gate accepts it for nothing."""
    approver_active: bool
    approver_is_requester: bool
    """The approver's standing now (`DeskSignoff`): whether a yes of theirs may still run."""

    def render(self) -> str:
        said = f"{shown(self.verdict)} at the desk by {shown(self.approver)} at {_when(self.decided_at)}"
        if not self.binds:
            said += " (signed over another binding: the gate accepts it for nothing)"
        return said + (f", note: {shown(self.note)}" if self.note else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "verdict": self.verdict,
            "decided_at": _iso(self.decided_at),
            "note": self.note,
            "binds": self.binds,
        }


@dataclass(frozen=True)
class ListedApproval:
    """One approval: the question's call, its life so far, and how it ended."""

    ref: str
    status: str
    tool: str
    principal: str
    arguments: Any
    """The canonical arguments the question was rendered from (a mapping), or the stored text if it is no JSON."""
    question: str
    """As put to the human, stored once: its effect lines state the arguments (amount, accounts, owners, memo)."""
    created_at: float | None
    expires_at: float | None
    """Each time in epoch seconds, None where the column holds no time a calendar has (edited)."""
    channel: str
    decided_at: float | None
    note: str | None
    outcome: Any
    desk: DeskMark | None

    @property
    def waiting_for_caller(self) -> bool:
        """Approved at the desk, still pending, not void: only its caller continuing (with `approval_ref`) runs it."""
        return self._yes_pending and self.void is None

    @property
    def void(self) -> str | None:
        """Why a desk yes still pending runs nothing (`policy.store.void_yes`, the settlement's rule), else None."""
        if not self._yes_pending:
            return None
        assert self.desk is not None
        return void_yes(self.desk.approver_active, self.desk.approver_is_requester, self.principal)

    @property
    def _yes_pending(self) -> bool:
        return (
            self.status == ApprovalState.PENDING
            and self.desk is not None
            and self.desk.binds
            and (self.desk.verdict == AT_DESK)
        )

    def render(self, now: float) -> str:
        """Lines for a terminal: the call and what its question stated, when it was asked and is due, the desk's
        decision, how it ended."""
        call = shown_call(self.tool, self.arguments)
        lines = [f"{shown(self.ref)}  {shown(self.status):<9}  {shown(self.principal)}  {call}"]
        lines += [shown(line) for line in stated_effect(self.question)]
        lines.append(f"asked {_when(self.created_at)} via {shown(self.channel)}; {self._deadline(now)}")
        if self.waiting_for_caller:
            assert self.desk is not None
            lines.append(f"{self.desk.render()}; waiting for its caller to continue {self._continue_by(now)}")
        elif self.void is not None:
            assert self.desk is not None
            lines.append(
                f"{self.desk.render()}; void: by {shown(self.desk.approver)}, {shown(self.void)}, so nothing will run "
                "(the expiry sweep ends it denied)"
            )
        elif self.desk is not None:
            lines.append(self.desk.render())
        if self.decided_at is not None or self.outcome is not None:
            lines.append(f"ended {_when(self.decided_at)}: {self._ending()}")
        if self.note:
            lines.append(f"note: {shown(self.note)}")
        return "\n      ".join(lines)

    def clock_set_back(self, now: float) -> bool:
        """Pending, and `now` reads too long before it was asked to tell whether it is over: it is over, as the
        gate, the desk and the sweep read it (`Approval.set_back`), whatever its deadline says."""
        return self.status == ApprovalState.PENDING and self.created_at is not None and self.created_at > asked_by(now)

    def _deadline(self, now: float) -> str:
        due = f"answer by {_when(self.expires_at)}"
        if self.clock_set_back(now):
            return f"{due} ({_SET_BACK})"
        overdue = self._overdue(now)
        if overdue is None:
            return due
        return f"{due} (overdue by {span_text(overdue)})" if overdue >= 0 else f"{due} ({span_text(-overdue)} left)"

    @property
    def continue_by(self) -> float | None:
        """When a desk yes waiting for its caller must be continued (`Approval.continue_by`); None for any other."""
        decided = self.desk.decided_at if self.desk is not None and self.waiting_for_caller else None
        if decided is None or self.created_at is None or self.expires_at is None:
            return None
        return decided + (self.expires_at - self.created_at)

    def _continue_by(self, now: float) -> str:
        by = self.continue_by
        if by is None:
            return "(by when, its stored times do not tell)"
        if self.clock_set_back(now):
            return f"by {_when(by)} ({_SET_BACK})"
        if now < by:
            return f"by {_when(by)} ({span_text(by - now)} left)"
        return f"by {_when(by)} (past it by {span_text(now - by)}: the expiry sweep ends it expired)"

    def _overdue(self, now: float) -> float | None:
        """Seconds a pending approval is past its deadline (negative: still open); None once it has ended."""
        if self.status != ApprovalState.PENDING or self.expires_at is None:
            return None
        return now - self.expires_at

    def _ending(self) -> str:
        if not isinstance(self.outcome, dict):
            return shown(str(self.outcome))
        status, message = self.outcome.get("status"), self.outcome.get("message")
        return shown(f"{status}: {message}" if message else str(status))

    def as_json(self, now: float) -> dict[str, Any]:
        """The same, as one JSON object with the same keys every time (null where there is nothing)."""
        overdue = self._overdue(now)
        return {
            "ref": self.ref,
            "status": self.status,
            "tool": self.tool,
            "principal": self.principal,
            "arguments": self.arguments,
            "question": self.question,
            "created_at": _iso(self.created_at),
            "deadline": _iso(self.expires_at),
            "overdue_seconds": int(overdue) if overdue is not None and overdue >= 0 else None,
            "clock_set_back": self.clock_set_back(now),
            "channel": self.channel,
            "desk_decision": self.desk.as_json() if self.desk else None,
            "waiting_for_caller": self.waiting_for_caller,
            "void": self.void,
            "continue_by": _iso(self.continue_by),
            "decided_at": _iso(self.decided_at),
            "outcome_status": self.outcome.get("status") if isinstance(self.outcome, dict) else None,
            "outcome_message": self.outcome.get("message") if isinstance(self.outcome, dict) else None,
            "note": self.note,
        }


def approvals(
    db: Database, *, status: str = "all", principal: str | None = None, tool: str | None = None, limit: int = 20
) -> list[ListedApproval]:
    """Up to `limit` approvals, newest first, of `status` (one of `STATUSES`), `principal` and `tool` when given."""
    assert status in STATUSES, status
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if status == AT_DESK:
        where.append(_YES_AT_DESK)
    elif status != "all":
        where.append("a.status = :status")
        params["status"] = status
    if principal is not None:
        where.append("a.principal = :principal")
        params["principal"] = principal
    if tool is not None:
        where.append("a.tool = :tool")
        params["tool"] = tool
    query = text(
        _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY a.created_at DESC, a.ref DESC"
        " LIMIT :limit"
    )
    return [_listed(row) for row in db.read(lambda conn: conn.execute(query, params).all())]


def _listed(row: Any) -> ListedApproval:
    desk = None
    if row.approver is not None:
        desk = DeskMark(
            row.approver,
            row.verdict,
            _time(row.desk_at),
            row.desk_note,
            bool(row.desk_binds),
            row.approver_status == "active",
            bool(row.approver_linked),
        )
    return ListedApproval(
        ref=row.ref,
        status=row.status,
        tool=row.tool,
        principal=row.principal,
        arguments=parsed_or_stored(row.arguments_json),
        question=row.question,
        created_at=_time(row.created_at),
        expires_at=_time(row.expires_at),
        channel=row.channel or DEFAULT_CHANNEL.value,  # asked before migration 0012: as `any`
        decided_at=_time(row.decided_at),
        note=row.note,
        outcome=None if row.outcome_json is None else parsed_or_stored(row.outcome_json),
        desk=desk,
    )


def _time(stored: object) -> float | None:
    """A stored time in epoch seconds, or None for NULL or what no calendar holds (text, NaN, 1e300: edited)."""
    try:
        epoch = float(stored)  # type: ignore[arg-type]
        datetime.fromtimestamp(epoch, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return epoch


def _when(epoch: float | None) -> str:
    """A time as the questions state their deadline (`deadline_text`: UTC, to the second)."""
    return "(no time stored)" if epoch is None else deadline_text(epoch)


def _iso(epoch: float | None) -> str | None:
    """A time in the ledger's timestamp format (`2024-05-01T09:30:00.123456Z`)."""
    return None if epoch is None else format_timestamp(datetime.fromtimestamp(epoch, UTC))
