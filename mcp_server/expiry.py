"""Ending the questions nobody came back for, so every approval reaches a final state in the ledger and the audit.

A call without an idempotency key (or a key never retried), a 2026-07-28 client that never sends its second
round, a desk link never continued (decided or not; a yes is its caller's only within its window,
`Approval.continue_by`): the gate settles such an approval only when its caller returns, so without
this its row stayed `pending` for good and its `requested` record had no end. Every server process sweeps on its
audit thread (`audit.sequencer.Background`): at start, then every `EXPIRY_INTERVAL`, in batches of at most
`EXPIRY_BATCH`, each approval settled by `Gate.expire_overdue` exactly as its caller returning would settle it.
"""

import logging
import time
from dataclasses import dataclass, field

from mcp_server.clock_check import ClockWatch
from policy.gate import Gate

log = logging.getLogger(__name__)

EXPIRY_GRACE = 60.0
"""Seconds past its deadline an approval is left to its caller before the server ends it. The gate already
refuses an answer arriving after the deadline, so this waits for no answer: it keeps the sweep clear of what was
in time, a desk decision whose transaction is still committing and the clocks of replicas running behind (the
sealed state of a 2026-07-28 round lives as long, `app.STATE_TTL_GRACE`). At least `policy.store.CLOCK_TOLERANCE`:
a replica whose clock runs that far ahead then ends no question before its deadline."""
EXPIRY_INTERVAL = 15.0
"""Seconds between sweeps: an abandoned approval ends within `EXPIRY_GRACE` + this of its deadline. A sweep with
nothing due is one read of the pending rows' index (migration 0014; each row, as none may be `set_back`), so every
replica sweeping this often costs next to nothing."""
EXPIRY_BATCH = 200
"""Approvals ended per transaction at most: a backlog is worked off in short transactions."""


@dataclass
class ExpirySweep:
    """The sweep of one server process, run by its audit thread (`due`) or called (`sweep`)."""

    gate: Gate
    grace: float = EXPIRY_GRACE
    interval: float = EXPIRY_INTERVAL
    batch: int = EXPIRY_BATCH
    watch: ClockWatch | None = None
    """This server's clock held to the database's: measured before each sweep, which is skipped while it is off."""
    unreadable: dict[str, str] = field(default_factory=dict, init=False)
    """Approvals found edited unreadable in the database, each with why: logged once, then passed over (a row
    the gate cannot settle must not hold up the others, batch after batch)."""
    _next: float = field(default=0.0, init=False)

    def due(self) -> None:
        """Sweep if `interval` has passed since the last sweep began (the first call always sweeps)."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self.sweep()

    def sweep(self) -> int:
        """End every approval due now, a batch per transaction; how many ended here (another process's sweep
        may end some meanwhile: each ends once). None while this server's clock is off the database's: by it,
        questions would end early or late."""
        if not self._clock_agrees():
            return 0
        ended = 0
        while True:
            done = self.gate.expire_overdue(self.grace, self.batch, self.unreadable.keys())
            for ref, why in done.unreadable.items():
                log.error(
                    "approval %s is past its deadline but its row cannot be read or settled (%s; edited in the "
                    "database?): it is left pending",
                    ref,
                    why,
                )
            self.unreadable.update(done.unreadable)
            ended += done.ended
            if done.looked < self.batch:
                return ended

    def _clock_agrees(self) -> bool:
        """Measure the clock (if watched), logging when it stops or starts agreeing with the database's."""
        if self.watch is None:
            return True
        agreed = self.watch.agrees
        self.watch.measure()
        if agreed and not self.watch.agrees:
            log.error("%s: expiry sweeps are skipped and /readyz is 503 until it agrees", self.watch.problem())
        elif self.watch.agrees and not agreed:
            log.warning("this server's clock agrees with the database's again (%.1f s apart)", self.watch.offset)
        return self.watch.agrees
