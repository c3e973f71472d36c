"""This server's clock held to the database's, where replicas meet (PostgreSQL).

Deadlines are stored as wall-clock time and read by each replica's own clock, so any two replicas must agree
within `policy.store.CLOCK_TOLERANCE` (60 s): past it, a replica ahead ends other replicas' questions before
their deadline, and one behind ends those they just asked (`Approval.set_back`). Written in README alone, that
rule held only as long as every operator kept NTP running. Each replica within `MAX_OFFSET` (half the
tolerance) of the database's clock keeps it with every other, so a replica measures its offset from the
database: at start, where it refuses to serve past it, and before each expiry sweep, which it then skips (its
`/readyz` is 503) until its clock agrees again. SQLite's ledger is a file on this host: one clock, nothing to
compare.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from mcp_server.storage.database import Database
from mcp_server.storage.statement import Statement
from policy.store import CLOCK_TOLERANCE

MAX_OFFSET = CLOCK_TOLERANCE / 2
"""Seconds this server's clock may differ from the database's: two replicas within it are within the tolerance."""
_DATABASE_NOW = Statement("SELECT EXTRACT(EPOCH FROM clock_timestamp())")


class ClockSkew(ValueError):
    """This server's clock is further from the database's than `MAX_OFFSET`."""


@dataclass
class ClockWatch:
    """The offset of this host's clock (`clock`) from the database's, as last measured."""

    db: Database
    clock: Callable[[], float] = time.time
    offset: float = 0.0
    """The database's clock minus this server's, in seconds, at the last `measure`."""

    @property
    def agrees(self) -> bool:
        return abs(self.offset) <= MAX_OFFSET

    def measure(self) -> None:
        """Read the database's clock against this server's, around the round trip's midpoint (PostgreSQL only)."""
        if self.db.dialect == "postgresql":
            self.offset = self.db.read(self._offset)

    def check(self) -> None:
        """Measure, and refuse (`ClockSkew`) a clock past `MAX_OFFSET`: for a server about to start serving."""
        self.measure()
        if not self.agrees:
            raise ClockSkew(self.problem())

    def problem(self) -> str:
        side = "behind" if self.offset > 0 else "ahead of"
        return (
            f"this server's clock reads {abs(self.offset):.0f} s {side} the database's; every replica must keep "
            f"within {MAX_OFFSET:.0f} s of it (run NTP), or deadlines read on it are wrong by as much"
        )

    def _offset(self, conn: Connection) -> float:
        before = self.clock()
        row = _DATABASE_NOW.one(conn)
        after = self.clock()
        assert row is not None, "SELECT without FROM returns one row"
        return float(row[0]) - (before + after) / 2
