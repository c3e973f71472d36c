"""Turns: write transactions that must not interleave, per name, across processes and replicas.

A decision that reads a total over other calls (today's moved amount) is only sound if no
call changing that total commits between the read and this transaction's own commit; an
idempotency key may be stored only by the transaction that found it unused. Both hold when
such transactions take a turn on the name (the principal, the key) before they read.

PostgreSQL: a transaction-scoped advisory lock on (space, hash of the ledger and the name),
released at commit or rollback; READ COMMITTED then shows every statement after it what the
previous holder committed. Advisory locks span the whole database, so the ledger is part of
the key (`LEDGER`): ledgers in other schemas of it never wait on this one's turns. A hash
collision only makes two names share a turn. SQLite: nothing to take, since `BEGIN IMMEDIATE`
already gives every write transaction the whole file.

Lock order (no deadlocks): the setup's turn, the account numbers' turn, the principal's turn, then the key's,
then approval rows, then account rows (in id order). (Audit records take no shared lock: see `audit.sequencer`.)
"""

from collections.abc import Collection
from enum import IntEnum

from sqlalchemy import Connection

from mcp_server.storage.statement import Statement

LEDGER = "current_schema()"
"""The ledger, in the SQL of an advisory lock's key: its schema (`Database.open` refuses a search path
on which the ledger's tables are elsewhere)."""

_TAKE = Statement(f"SELECT pg_advisory_xact_lock(:space, hashtext({LEDGER} || '/' || :name))")
_TRY = Statement(
    f"SELECT name FROM unnest(CAST(:names AS TEXT[])) AS name WHERE pg_try_advisory_xact_lock(:space, "
    f"hashtext({LEDGER} || '/' || name))"
)


class Space(IntEnum):
    """What a turn is named after; two spaces never share a turn."""

    PRINCIPAL = 1
    IDEMPOTENCY_KEY = 2
    SETUP = 3
    """One-time setup of the ledger (the demo seed): replicas started together must not both do it."""
    CHALLENGE_SUBJECT = 4
    """Whom the desk issues challenges to (a client address): its open ones are counted in its turn."""
    SIGN_IN_SCOPE = 5
    """Whose desk sign-in failures are counted (a client address, an approver): an attempt is counted in its turn."""
    ACCOUNT_NUMBERS = 6
    """The customer accounts' numbers: a new account's is chosen, or checked unlike every other, in its turn."""


def take_turn(conn: Connection, space: Space, name: str) -> None:
    """Wait until no other transaction holds `name`'s turn, then hold it until this one ends."""
    if conn.dialect.name != "postgresql":
        return
    _TAKE.send(conn, {"space": int(space), "name": name})


def try_turns(conn: Connection, space: Space, names: Collection[str]) -> set[str]:
    """Of `names`, those whose turns were free, each now held until this transaction ends (one round trip); those
    another transaction holds are not waited for. SQLite: all of them (its write lock is every turn)."""
    if conn.dialect.name != "postgresql" or not names:
        return set(names)
    return {str(row[0]) for row in _TRY.all(conn, {"space": int(space), "names": sorted(names)})}
