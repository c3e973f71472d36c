"""A fault at each statement of a gated transfer, and of an audit batch: the invariants hold.

For every statement N that a keyed, approved transfer runs (the question's transaction, the answer's
lookup, the settlement, each COMMIT), on both backends and both protocol revisions: the connection is
lost there, or the code fails there, or (PostgreSQL) the COMMIT lands and its answer is lost. The caller
is told the truth (never `executed` unless the money moved; never "nothing was done" if it moved), then
does what a caller does, repeats the call with the same idempotency key (and the same answer), and:
the money moves exactly once, the books balance, the audit verifies, and no approval goes backwards.

The audit sequencer, failed at each statement of a batch and restarted, leaves one whole chain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from sqlalchemy import text

from mcp_server.audit import sequencer
from mcp_server.audit.reader import verify
from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from policy.approval_states import TRANSITIONS, ApprovalState
from policy.testing import ScriptedResponder, approve
from tests.server.faults import Fault, Faults, faults_on
from tests.server.harness import Harness
from tests.support import answer, keyed, outcome

pytestmark = pytest.mark.anyio

TOOL = "transfer_funds"
UNKNOWN = "whether it took effect is not known"
APPROVALS = text("SELECT ref, status FROM approvals WHERE arguments_json LIKE :memo")
MEMOS = text("SELECT COUNT(*) FROM transactions WHERE memo = :memo")
ATTEMPTS = 4
"""Calls a caller makes before giving up: a fault fails one (a transaction whose connection it killed before its
first round trip is run again on a fresh one instead), and a round trip of another kind may come between."""
MOST_STATEMENTS = 100
"""A bound on the sweep: a flow that ran this many statements without ending is a finding of its own."""


@pytest.fixture
def faults(ledger_harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    yield from faults_on(ledger_harness.db, monkeypatch)


@pytest.fixture
def server_faults(ledger_harness: Harness, faults: Faults) -> Faults:
    """`faults` in the server only: the test's reads of its ledger (`ledger_harness.db`) are not counted."""
    faults.spared = ledger_harness.db.engines
    return faults


@dataclass
class Pass:
    """One transfer of the sweep: its accounts, key and memo, and what its caller was told at each call."""

    harness: Harness
    number: int
    legacy: bool
    args: dict[str, Any] = field(init=False)
    told: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        source, target = self.harness.open_account("50"), self.harness.open_account("0")
        self.memo = f"fault-{self.number}-{source}"
        self.args = {"from_account": source, "to_account": target, "amount": "20", "memo": self.memo}
        self.meta = keyed(self.memo)

    @property
    def moved(self) -> int:
        """How many times the transfer moved the money (0 or 1 when sound)."""
        return int(self.harness.db.read(lambda c: c.execute(MEMOS, {"memo": self.memo}).scalar_one()))

    def approvals(self) -> dict[str, str]:
        rows = self.harness.db.read(lambda c: c.execute(APPROVALS, {"memo": f"%{self.memo}%"}).all())
        return {str(ref): str(status) for ref, status in rows}

    async def call(self, client: Client, state: str | None = None) -> types.CallToolResult | types.InputRequiredResult:
        """Make the call (with `state`: answer the round sealed in it, yes), and check that what it tells is
        the truth about what it did: `executed` only once the money moved, and nothing moved by a call that
        says otherwise, unless it says that what happened is not known."""
        before = self.moved
        if state is not None:
            result = await answer(client, TOOL, self.args, state, meta=self.meta)
        elif self.legacy:
            result = await client.call_tool(TOOL, self.args, meta=self.meta)
        else:
            result = await client.session.call_tool(TOOL, self.args, meta=self.meta, allow_input_required=True)
        after = self.moved
        assert after <= 1, f"the transfer moved money {after} times"
        if isinstance(result, types.InputRequiredResult):
            assert after == 0, "asked about a transfer that already ran"
            return result
        told = outcome(result)
        self.told.append(told)
        if told["status"] == "executed":
            assert after == 1, f"told executed, but the money did not move: {told}"
        elif UNKNOWN not in told["message"]:
            assert after == before, f"told {told['status']} ({told['message']}), but the money moved meanwhile"
        return result


def no_step_back(before: dict[str, str], after: dict[str, str]) -> None:
    """Every approval seen before is still there, in the same state or one its state machine reaches."""
    for ref, status in before.items():
        now = after[ref]
        reachable = TRANSITIONS.get(ApprovalState(status), frozenset()) | TRANSITIONS[ApprovalState.APPROVED]
        assert now == status or (status == "pending" and ApprovalState(now) in reachable), f"{ref}: {status} → {now}"


async def answered_flow(client: Client, transfer: Pass) -> None:
    """2026-07-28: the call opens its question, the answer comes back in a second call; a call that does
    not bring what was expected is repeated with the same key (and the same answer)."""
    state: str | None = None
    for _ in range(ATTEMPTS):
        result = await transfer.call(client, state)
        if isinstance(result, types.InputRequiredResult):
            state = result.request_state
        elif outcome(result)["status"] == "executed":
            return


async def inline_flow(client: Client, transfer: Pass) -> None:
    """2025-11-25: the question is asked inline and answered yes; a call that did not run is repeated."""
    for _ in range(ATTEMPTS):
        if outcome(await transfer.call(client))["status"] == "executed":
            return


FLOWS = {"2026-07-28": ("auto", answered_flow), "2025-11-25": ("legacy", inline_flow)}


def sweep(harness: Harness, faults: Faults, *, legacy: bool) -> Iterator[tuple[int, Pass]]:
    """Passes with the fault at statement 1, 2, ... until one ran fewer statements than that."""
    for nth in range(1, MOST_STATEMENTS):
        transfer = Pass(harness, nth, legacy)
        yield nth, transfer
        if faults.fired is None:
            return
    raise AssertionError(f"a flow ran {MOST_STATEMENTS} statements")


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("fault", [Fault.LOST, Fault.CRASH, Fault.COMMITTED])
async def test_a_fault_at_any_statement_of_an_approved_transfer_breaks_no_promise(
    ledger_harness: Harness, server_faults: Faults, flow: str, fault: Fault
) -> None:
    harness, faults = ledger_harness, server_faults
    if fault is Fault.COMMITTED and harness.db.dialect != "postgresql":
        pytest.skip("SQLite runs in this process: no answer to its COMMIT is lost on the way")
    mode, run = FLOWS[flow]
    fired: list[str] = []
    async with harness.client(ScriptedResponder(*[approve()] * 2 * ATTEMPTS * MOST_STATEMENTS), mode=mode) as client:
        for nth, transfer in sweep(harness, faults, legacy=mode == "legacy"):
            with faults.armed(nth, fault) as seen:
                await run(client, transfer)
            if faults.fired is not None:
                fired.append(faults.fired)
            seen_approvals = transfer.approvals()
            await run(client, transfer)  # the caller comes back once more, with the same key
            no_step_back(seen_approvals, transfer.approvals())
            assert transfer.moved == 1, (nth, faults.fired, transfer.told, seen)
            assert transfer.told[-1]["status"] == "executed", (nth, faults.fired, transfer.told)
            assert list(transfer.approvals().values()).count("executed") == 1
            assert harness.ledger.check_invariants() == []
    assert fired, "no fault fired"
    assert verify(harness.db).findings == []


@pytest.mark.parametrize("fault", [Fault.LOST, Fault.CRASH, Fault.COMMITTED])
def test_a_fault_at_any_statement_of_an_audit_batch_leaves_one_whole_chain(
    ledger_harness: Harness, faults: Faults, fault: Fault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of two, five records waiting: the fault lands in the first, second or third batch. The
    sequencer that met it goes on, and one started afresh (a restart) chains too: every record is chained
    once, in one chain that verifies."""
    harness = ledger_harness
    if fault is Fault.COMMITTED and harness.db.dialect != "postgresql":
        pytest.skip("SQLite runs in this process: no answer to its COMMIT is lost on the way")
    monkeypatch.setattr(sequencer, "BATCH_LIMIT", 2)
    account = harness.open_account("0")
    fired = []
    for nth in range(1, MOST_STATEMENTS):
        for _ in range(5):
            harness.ledger.deposit(account, "1")
        running = Sequencer(harness.db, AuditWriter())
        with faults.armed(nth, fault), contextlib.suppress(Exception):
            running.chain()
        if faults.fired is None:
            break
        fired.append(faults.fired)
        running.chain()
        Sequencer(harness.db, AuditWriter()).chain()
        verified = verify(harness.db)
        assert (verified.findings, verified.pending) == ([], 0), (nth, faults.fired)
    assert fired, "no fault fired"
