"""The exploring drill's invariants, checked from outside the servers: the books, what the clients saw, the
approvals and the audit (docs/ARCHITECTURE.md, "Invariants")."""

from __future__ import annotations

import time
from collections import defaultdict

from sqlalchemy import text

from mcp_server.expiry import EXPIRY_GRACE, EXPIRY_INTERVAL
from tests.drills.schedule import Schedule, Seen
from tests.drills.support import Books

UNSETTLED = {"idempotency_conflict", "database_unavailable", "too_many_pending"}
"""Failure codes that leave a key's outcome to another call (`too_many_pending` stores nothing)."""
SWEEP_SLACK = 10.0
"""Seconds a sweep may take to come round beyond its interval (a replica restarting sweeps at start)."""


def memo_prefix(schedule: Schedule) -> str:
    return f"x{schedule.seed}-"


def executed(seen: Seen) -> bool:
    return seen.result is not None and seen.result.get("status") == "executed"


def checkpoint(books: Books, schedule: Schedule, total: int) -> None:
    """What must hold at any moment: the books balance, no memo (a key, or one unkeyed call) moved money twice,
    every transfer a client saw executed is in the ledger once, as asked, and one it saw end otherwise is not."""
    seen = [s for client in schedule.clients for s in list(client.seen)]  # before reading the ledger
    assert books.ledger.check_invariants() == []
    assert books.customer_total() == total
    counts = books.memo_counts(memo_prefix(schedule))
    assert {memo: n for memo, n in counts.items() if n > 1} == {}
    for s in seen:
        if executed(s) and s.call.tool == "transfer_funds":
            memo = s.call.args["memo"]
            assert counts[memo] == 1, f"{memo} acknowledged executed, {counts[memo]} times in the ledger"
            assert _moved(books, memo) == (s.call.args["to_account"], _minor(s.call.args["amount"])), s
        if _ended_unmoved(s):
            memo = s.call.args["memo"]
            assert counts[memo] == 0, f"{memo} acknowledged {s.result}, {counts[memo]} times in the ledger"
        if executed(s) and s.call.tool == "close_account":
            assert _status(books, s.call.args["account_id"]) == "closed", s


def final(books: Books, schedule: Schedule, total: int) -> None:
    """After the run, every replica up and its audit records chained: the checkpoint, then the approvals, the
    questions and the audit chain."""
    checkpoint(books, schedule, total)
    seen = [s for client in schedule.clients for s in client.seen]
    answers: dict[str, set[str]] = defaultdict(set)  # per key (or unkeyed call): the answers given when asked
    for n, s in enumerate(seen):
        if s.asked and s.later is None:  # a `later` round's yes is sent afterwards, maybe never
            answers[s.call.key or f"#{n}"].add(s.call.answer)
    for n, s in enumerate(seen):
        if executed(s) and s.result is not None and s.result.get("approval_ref"):
            assert answers[s.call.key or f"#{n}"] & {"yes", "later"}, f"executed without a yes: {s}"

    now = time.time()
    approvals = books.db.read(lambda c: c.execute(text("SELECT ref, status, expires_at FROM approvals")).all())
    for ref, status, expires_at in approvals:
        events = books.events(ref)
        assert events[0] == "requested", (ref, events)
        if status == "pending":
            assert expires_at + EXPIRY_GRACE + EXPIRY_INTERVAL + SWEEP_SLACK > now, f"{ref} overdue and pending"
            assert events == ["requested"], (ref, events)
            continue
        assert events[-1] == status, (ref, status, events)
        assert events.count(status) == 1, (ref, events)
        if status == "executed":
            assert "approved" in events, f"{ref} executed without an approval: {events}"
    books.assert_sound()


def _ended_unmoved(seen: Seen) -> bool:
    """A transfer acknowledged as ended without moving money, its key's outcome for good (not a conflict with the
    key's other arguments, nor a database error whose COMMIT may have landed)."""
    if seen.result is None or seen.call.tool != "transfer_funds" or executed(seen):
        return False
    error = seen.result.get("error")
    return not (isinstance(error, dict) and error.get("code") in UNSETTLED)


def _minor(amount: str) -> int:
    units, cents = amount.split(".")
    return int(units) * 100 + int(cents)


def _moved(books: Books, memo: str) -> tuple[str, int]:
    """The account credited by the transfer with `memo`, and by how much."""
    sql = text(
        "SELECT e.account_id, e.amount_minor FROM entries e JOIN transactions t ON t.id = e.transaction_id "
        "WHERE t.memo = :m AND e.amount_minor > 0"
    )
    account, amount = books.db.read(lambda c: c.execute(sql, {"m": memo}).one())
    return str(account), int(amount)


def _status(books: Books, account: str) -> str:
    sql = text("SELECT status FROM accounts WHERE id = :a")
    return str(books.db.read(lambda c: c.execute(sql, {"a": account}).scalar_one()))
