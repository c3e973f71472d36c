"""The transaction shapes `bench.shapes` captures from the server: what a question, a settlement
and a read send to the database (and what `bench.db_ceiling`-style replays rely on)."""

import os
import re

import pytest

from bench.shapes import AUTOCOMMIT, Shapes, Transaction, capture

ACCOUNT_READ = re.compile(r"FROM accounts WHERE id (IN|= [:%]\(?first)")
BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get("BANKGATE_TEST_POSTGRES_URL") else [])]


@pytest.fixture(scope="module", params=BACKENDS)
def shapes(request: pytest.FixtureRequest) -> Shapes:
    return capture(os.environ["BANKGATE_TEST_POSTGRES_URL"] if request.param == "postgresql" else None)


def account_reads(tx: Transaction) -> list[str]:
    """The reads of the accounts a call names: both of a pair (`IN`), or one (`held_account_in`)."""
    return [s.sql for s in tx.body if s.verb == "SELECT" and ACCOUNT_READ.search(s.sql)]


def test_a_question_takes_no_row_lock_only_its_principals_and_its_keys_turns(shapes: Shapes) -> None:
    """Under the shipped policy (no rule reads a total): no row lock; the principal's turn, in which its open
    questions are counted against `max_pending_approvals` (read with the first round trip), and the key's, so that
    no settlement of the key commits between its read and that of the key's pending question."""
    question = shapes.gated_transfer.transactions[0]
    assert any(s.sql.startswith("INSERT INTO approvals") for s in question.body)
    assert len(account_reads(question)) == 1
    turns = [s.sql for s in question.body if s.locks and not s.audit]
    assert turns == (
        ["SELECT pg_advisory_xact_lock(:space, hashtext(current_schema() || '/' || :name))"] * 2
        if shapes.backend == "postgresql"
        else []
    )
    assert sum("FROM approvals WHERE principal" in s.sql for s in question.body) == 1
    assert not any("FROM accounts WHERE id = " in s.sql for s in question.body), "one read of the accounts"


def holding_reads(tx: Transaction) -> list[str]:
    return [s.sql for s in tx.body if "account_access" in s.sql or "principal_roles" in s.sql]


def test_the_accounts_and_the_callers_entitlements_are_one_read(shapes: Shapes) -> None:
    """No question or read reads what its caller holds apart from the accounts it names
    (`entitlements.held_columns`)."""
    question = shapes.gated_transfer.transactions[0]
    (balance,) = shapes.balance.transactions
    for tx in (question, balance):
        (read,) = holding_reads(tx)
        assert read in account_reads(tx)


def test_a_settlement_reads_the_callers_entitlements_right_after_locking_the_accounts(shapes: Shapes) -> None:
    """A statement reads as of its start: read with the lock, what the caller holds could be as it was before
    a revocation committed while the lock was awaited (`entitlements.locked_holdings`). Read next, it is current,
    and kept so (`FOR SHARE`) until the settlement ends. SQLite's write transaction holds the whole file from its
    BEGIN, before any read: there the accounts and the holding are one read, as in a question."""
    settlement = shapes.gated_transfer.transactions[-1]
    (lock,) = account_reads(settlement)
    (read,) = holding_reads(settlement)
    if shapes.backend == "sqlite":
        assert read == lock
        return
    statements = [s.sql for s in settlement.body]
    assert statements.index(read) == statements.index(lock) + 1
    assert read.count("FOR SHARE") == 2


def test_a_settlement_locks_both_accounts_once_and_plans_once(shapes: Shapes) -> None:
    settlement = shapes.gated_transfer.transactions[-1]
    reads = account_reads(settlement)
    assert len(reads) == 1
    assert ("FOR UPDATE" in reads[0]) == (shapes.backend == "postgresql")
    assert [s.verb for s in settlement.body].count("UPDATE") >= 2  # the balances and the approval
    assert sum(s.sql.startswith("INSERT INTO transactions") for s in settlement.body) == 1


def test_an_allowed_read_takes_no_lock_and_writes_nothing(shapes: Shapes) -> None:
    (read,) = shapes.balance.transactions
    assert read.locks == 0
    assert {s.verb for s in read.body} == {"SELECT"}


def test_a_rejection_moves_no_money(shapes: Shapes) -> None:
    settlement = shapes.rejection.transactions[-1]
    assert account_reads(settlement) == []
    assert not any(s.sql.startswith("INSERT INTO transactions") for s in settlement.body)


def test_reads_send_no_begin_or_commit(shapes: Shapes) -> None:
    """Each statement sees its own snapshot (PostgreSQL READ COMMITTED in autocommit, SQLite outside a
    transaction); a balance is one statement, the answer's lookup two."""
    (read,) = shapes.balance.transactions
    lookup = shapes.gated_transfer.transactions[1]
    for tx in (read, lookup):
        assert tx.end == AUTOCOMMIT and not any(s.verb in ("BEGIN", "COMMIT") for s in tx.statements)
    assert [s.verb for s in read.body] == ["SELECT"]
    assert [s.verb for s in lookup.body] == ["SELECT", "SELECT"]


def test_a_settlement_writes_its_audit_records_in_one_statement(shapes: Shapes) -> None:
    settlement = shapes.gated_transfer.transactions[-1]
    (insert,) = [s for s in settlement.body if s.audit]
    assert insert.sql.count("), (") == 1  # two rows: approved and executed


def test_on_postgresql_writes_whose_outcome_is_not_read_ride_with_the_next_round_trip(shapes: Shapes) -> None:
    """A write goes out with the next statement read, or with the COMMIT (`Statement.send`); so does BEGIN; and
    the reads a transaction announces (`expect`) go with its first (`Statement.prefetch`)."""
    if shapes.backend != "postgresql":
        pytest.skip("SQLite runs in the process: no round trips to save")
    question, lookup, settlement = shapes.gated_transfer.transactions
    # BEGIN + settings + principal's turn + key's turn + key recall + its open questions + accounts with entitlements
    # + the key's pending approval; the approval (none was pending) + audit record + COMMIT
    assert question.round_trips == 2 < len(question.statements) + 1
    assert [s.verb for s in question.body[-2:]] == ["INSERT", "INSERT"]
    assert not any("ON CONFLICT" in s.sql for s in question.body), "a unique violation fails the COMMIT instead"
    assert lookup.round_trips == 1  # key recall + the approval asked
    # BEGIN + turn + key recall + approval + its desk decision + accounts with entitlements; the effect + settling
    # the approval (its count not waited for: the database refuses a second settlement) + outcome + audit + COMMIT
    assert settlement.round_trips == 2 < len(settlement.statements) + 1
