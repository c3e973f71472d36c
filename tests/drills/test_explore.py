"""An exploring drill, in the manner of TigerBeetle's VOPR: a seed draws a random schedule of concurrent clients
(both protocol revisions) and faults (SIGKILLed replicas, ended database sessions) against 1-2 real servers on one
ledger, and the invariants are checked from outside after each fault and at the end (`schedule`, `checks`).

A failure names its seed: `BANKGATE_DRILL_SEED=<seed>` replays the same decisions (the timing varies);
`BANKGATE_DRILL_SECONDS` runs longer than the default 40 s a backend.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.drills import checks
from tests.drills.schedule import APPROVAL_TIMEOUT, SECONDS, Fault, plan, play, seed
from tests.drills.support import KEY_RING, Books, ServerProcess, record, running
from tests.server.test_stale_connections import tagged

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(2 * SECONDS + 240)]  # a longer run is given the time it needs

UNCHAINED_WITHIN = 30.0


async def test_a_random_schedule_of_calls_and_faults_keeps_every_invariant(db_url: str, tmp_path: Path) -> None:
    drill_seed = seed()
    postgres = db_url.startswith("postgresql")
    books = Books(db_url)
    accounts = books.open_accounts(8, "200.00")
    total = books.customer_total()
    schedule = plan(drill_seed, accounts, replicas=2 if postgres else 1, postgres=postgres)
    server_url = tagged(db_url) if postgres else db_url  # its sessions can be found and ended
    servers = [
        ServerProcess(server_url, tmp_path, keys=KEY_RING, approval_timeout=APPROVAL_TIMEOUT, name=f"replica-{n}")
        for n in range(schedule.replicas)
    ]
    faults: list[Fault] = []

    def after(fault: Fault) -> None:
        faults.append(fault)
        checks.checkpoint(books, schedule, total)

    try:
        with running(*servers):
            await play(schedule, servers, on_fault=after)
            with anyio.fail_after(UNCHAINED_WITHIN):  # restarted replicas chain what the killed ones left
                while books.unchained():
                    await anyio.sleep(0.1)
            checks.final(books, schedule, total)
    except BaseException as exc:
        exc.add_note(
            f"replay: BANKGATE_DRILL_SEED={drill_seed} BANKGATE_DRILL_SECONDS={SECONDS:g} (logs in {tmp_path})"
        )
        raise
    finally:
        books.close()
    seen = [s for client in schedule.clients for s in client.seen]
    record(
        "explore",
        backend=db_url.split(":", 1)[0],
        seed=drill_seed,
        seconds=SECONDS,
        replicas=schedule.replicas,
        clients=len(schedule.clients),
        calls=len(seen),
        outcomes=dict(Counter(_outcome(s.result) for s in seen if s.result is not None)),
        left_asked=sum(s.asked and s.result is None and s.error is None for s in seen),
        unacknowledged=sum(s.error is not None for s in seen),
        faults=len(faults),
    )


def _outcome(result: dict[str, Any]) -> str:
    """A result's status, and a failure's code."""
    error = result.get("error")
    return f"{result['status']} ({error['code']})" if isinstance(error, dict) else str(result["status"])
