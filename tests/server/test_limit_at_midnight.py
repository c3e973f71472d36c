"""A daily limit holds by the audit's own accounting when a call crosses midnight (both backends).

`moved_today_minor` sums the caller's executed records dated today (UTC); a call's record is dated when the
call began (before it waited for the caller's turn). If the total were read for the day the clock shows
later, a call begun before midnight and decided after it would be judged against the new day but counted
in the old one, which then holds more than the limit. Each call here reads the clock once per step, and
midnight falls between its two readings (a wait for the turn, on a busy PostgreSQL, widens that window).
"""

from collections import defaultdict

from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate
from policy.loader import load_policy
from policy.results import Status
from tests.server.harness import Harness
from tests.support import LIMIT_POLICY

MIDNIGHT = 1_800_057_600.0  # 2027-01-16T00:00:00Z
LIMIT_MINOR = 1000_00


class Clock:
    """Returns `readings` one by one, then the last one forever."""

    def __init__(self) -> None:
        self.readings = [MIDNIGHT - 60]

    def __call__(self) -> float:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_a_call_begun_before_midnight_counts_on_the_day_it_was_judged(ledger_harness: Harness) -> None:
    policy = load_policy(LIMIT_POLICY)
    clock = Clock()
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), clock=clock)
    source, target = ledger_harness.open_account("2000"), ledger_harness.open_account("0")
    call = Call("transfer_funds", gate.actions["transfer_funds"].canonical(
        {"from_account": source, "to_account": target, "amount": "400"}), "alice")  # fmt: skip

    for _ in range(2):  # 800.00 on the first day
        assert gate.open(call, human_reachable=False).final.status is Status.EXECUTED  # type: ignore[union-attr]
    clock.readings = [MIDNIGHT - 0.001, MIDNIGHT + 0.001]  # midnight between the call's two readings
    gate.open(call, human_reachable=False)

    per_day: dict[str, int] = defaultdict(int)
    for record in ledger_harness.audit(principal="alice", event="executed"):
        per_day[record["at"][:10]] += record["amount_minor"]
    assert all(total <= LIMIT_MINOR for total in per_day.values()), dict(per_day)
