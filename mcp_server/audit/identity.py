"""The ledger's identity as stored (`ledger_identity`, migration 0019): what its audit signatures name.

Read once by each process that signs (its `AuditWriter`, at start through its `Sequencer`) and by every
verification. What is stored is not trusted: the heads signed for it vouch for it (`policy.audit.head_problem`),
so an id or boundary edited in the database makes the ledger's own heads fail, and a server refuses to start on
it (`Sequencer.check_start`) rather than sign for a ledger the chain does not vouch for.
"""

import re

from sqlalchemy import Connection

from mcp_server.storage.statement import Statement
from policy.audit import LedgerIdentity

_READ = Statement("SELECT id, unnamed_through FROM ledger_identity")
_SHAPE = re.compile(r"[0-9a-f]{32}")


class LedgerIdentityError(ValueError):
    """The stored identity is missing, or not the shape migration 0019 writes: edited in the database."""


def read_identity(conn: Connection) -> LedgerIdentity:
    rows = _READ.all(conn)
    if len(rows) != 1:
        raise LedgerIdentityError(
            f"ledger_identity holds {len(rows)} rows, not the one migration 0019 wrote: edited in the database"
        )
    ledger, unnamed_through = rows[0]
    if not isinstance(ledger, str) or not _SHAPE.fullmatch(ledger) or not isinstance(unnamed_through, int):
        raise LedgerIdentityError("ledger_identity is not what migration 0019 wrote (32 hex digits and a position)")
    return LedgerIdentity(ledger, unnamed_through)
