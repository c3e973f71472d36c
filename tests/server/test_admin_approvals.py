"""`bankgate-mcp admin approvals`: an operator's view of the questions put to humans, read-only.

Each approval in every state the gate leaves it, made the way the gate makes it (the desk's world: a ledger
with two accounts and an enrolled approver), on SQLite and PostgreSQL; what a shell user sees, exit codes and
all. The CLI's `main` runs in process (its exit code is the process's).
"""

import json
import re
import subprocess
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import inspect, text

from mcp_server.app import open_state
from mcp_server.cli import admin
from mcp_server.cli.main import main
from mcp_server.storage import migrations
from mcp_server.storage.migrations import Migration
from policy.action import Call
from policy.gate import Opening
from policy.store import Approval
from policy.verdict import Verdict, VerdictKind
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import (
    DeskBrowser,
    World,
    approver_changes,
    approver_fixture,
    passkey_fixture,
    world_fixture,
)
from tests.docs.markdown import text_of

pytestmark = pytest.mark.anyio

world = world_fixture(World, "bankgate_admin_approvals")
passkey = passkey_fixture
erin = approver_fixture("erin")


def cli(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`bankgate-mcp admin approvals <args> --db <the world's ledger>`: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = main(["admin", "approvals", *args, "--db", world.db_url])
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def blocks(out: str) -> dict[str, str]:
    """The listing's entries by reference (each starts a line with its `APR-` reference), in order."""
    found = re.split(r"^(?=APR-)", out, flags=re.MULTILINE)
    return {block.split()[0]: block for block in found if block.startswith("APR-")}


def settle(world: World, approval: Approval, kind: VerdictKind) -> str:
    """Answer `approval` as a form answer would, through the gate; the status it ends in."""
    gate = world.state.gate
    locked = gate.store.transaction(lambda tx: tx.lock_approval(approval.ref))
    call = Call(approval.tool, dict(approval.arguments), approval.principal)
    return gate.conclude(Opening(call, approval=locked), Verdict(kind, "as asked", note="checked")).status.value


def dump(world: World) -> dict[str, list[str]]:
    """Every row of every table, as text: what a command that writes nothing leaves exactly as it was."""

    def read(conn: Any) -> dict[str, list[str]]:
        tables = inspect(conn).get_table_names()
        return {t: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t}")).all())) for t in tables}

    return world.db.read(read)


@dataclass
class Ledger:
    """One approval in each state, asked in this order (so newest first is the reverse)."""

    refs: dict[str, str]

    @property
    def newest_first(self) -> list[str]:
        return list(reversed(self.refs.values()))


@pytest.fixture
async def every_state(world: World, erin: DeskBrowser, passkey: SoftPasskey) -> Ledger:
    refs: dict[str, str] = {}
    later = open_state(world.settings)
    later.gate.clock = lambda: time.time() + 3600  # a server whose sweep finds it long overdue
    refs["expired"] = world.pending("11.00").ref
    assert later.expiry.sweep() == 1
    for kind, status in [
        (VerdictKind.APPROVE, "executed"),
        (VerdictKind.REJECT, "rejected"),
        (VerdictKind.CANCEL, "cancelled"),
        (VerdictKind.UNDELIVERED, "denied"),
    ]:
        approval = world.pending("12.00", principal="bob")
        assert settle(world, approval, kind) == status
        refs[status] = approval.ref
    drained, short = world.pending("4000.00"), world.pending("4000.00")
    assert settle(world, drained, VerdictKind.APPROVE) == "executed"
    assert settle(world, short, VerdictKind.APPROVE) == "failed"  # approved, then the money was gone
    refs["drained"], refs["failed"] = drained.ref, short.ref
    refs["overdue"] = world.pending("13.00").ref
    world.sql("UPDATE approvals SET expires_at = :t WHERE ref = :r", t=time.time() - 125, r=refs["overdue"])
    refs["desk_no"] = world.pending("14.00").ref
    assert (await erin.decide(refs["desk_no"], "rejected", passkey, note="not today")).status_code == 200
    refs["desk_yes"] = world.pending("15.00").ref
    assert (await erin.decide(refs["desk_yes"], "approved", passkey, note="fine")).status_code == 200
    refs["pending"] = world.pending("16.00", memo="invoice 12").ref
    return Ledger(refs)


async def test_every_state_is_listed_newest_first_with_how_it_ended(
    world: World, every_state: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = cli(world, capsys)
    assert (shown.returncode, shown.stderr) == (0, "")
    listed = blocks(shown.stdout)
    assert list(listed) == every_state.newest_first
    refs = every_state.refs
    for status in ("expired", "executed", "rejected", "cancelled", "denied", "failed"):
        block = listed[refs[status]]
        assert block.split()[1] == status, block
        assert re.search(rf"^      ended \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC: {status}\b", block, re.MULTILINE), block
    assert "Account ACC-001 has $988.00 available, less than the $4,000.00 requested." in listed[refs["failed"]]
    assert "note: checked" in listed[refs["rejected"]]

    pending = listed[refs["pending"]]
    assert pending.splitlines()[0].split()[:3] == [refs["pending"], "pending", "alice"]
    assert 'transfer_funds(amount="16.00", from_account="ACC-001", memo="invoice 12", to_account="ACC-002")' in pending
    assert "      Transfer $16.00 (USD) from ACC-001 (Ada Lovelace) to ACC-002 (Ben Franklin).\n" in pending
    assert '      Memo (written by the requester): "invoice 12"\n' in pending  # as the question stated it
    assert re.search(r"via any; answer by \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(4 min \d\d s left\)", pending), pending
    assert "ended" not in pending and "desk" not in pending
    assert re.search(r"answer by .* UTC \(overdue by 2 min 0\d s\)", listed[refs["overdue"]])
    assert "overdue" not in listed[refs["expired"]]  # only a pending one can be overdue

    waiting = listed[refs["desk_yes"]]
    assert waiting.split()[1] == "pending"
    assert re.search(
        r"approved at the desk by erin at .* UTC, note: fine; waiting for its caller to continue by "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(4 min \d\d s left\)$",
        waiting,
        re.MULTILINE,
    ), waiting
    refused = listed[refs["desk_no"]]
    assert "rejected at the desk by erin at" in refused and "waiting for its caller" not in refused


async def test_json_is_one_object_per_line_with_the_same_keys(
    world: World, every_state: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = cli(world, capsys, "--json")
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [line["ref"] for line in lines] == every_state.newest_first
    assert len({tuple(sorted(line)) for line in lines}) == 1  # stable keys: every object has them all
    assert set(lines[0]) == _readme_json_keys(), "the README's `--json` keys: are the keys printed"
    by_ref = {line["ref"]: line for line in lines}
    refs = every_state.refs
    yes = by_ref[refs["desk_yes"]]
    assert (yes["status"], yes["waiting_for_caller"]) == ("pending", True)
    assert yes["continue_by"] > yes["created_at"] and by_ref[refs["desk_no"]]["continue_by"] is None
    assert yes["desk_decision"] | {"decided_at": None} == {
        "approver": "erin",
        "verdict": "approved",
        "decided_at": None,
        "note": "fine",
        "binds": True,
    }
    assert [ref for ref, line in by_ref.items() if line["waiting_for_caller"]] == [refs["desk_yes"]]
    assert by_ref[refs["desk_no"]]["desk_decision"]["verdict"] == "rejected"
    assert 125 <= by_ref[refs["overdue"]]["overdue_seconds"] < 180
    assert by_ref[refs["pending"]]["overdue_seconds"] is None
    failed = by_ref[refs["failed"]]
    assert (failed["status"], failed["outcome_status"], failed["channel"]) == ("failed", "failed", "any")
    stated = {"amount": "4000.00", "from_account": "ACC-001", "to_account": "ACC-002", "memo": None}
    assert failed["arguments"] == stated
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", failed["decided_at"])
    assert failed["created_at"] < failed["deadline"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--status", "pending"], ["pending", "desk_yes", "desk_no", "overdue"]),
        (["--status", "approved"], ["desk_yes"]),  # a desk yes nobody continued yet
        (["--status", "expired"], ["expired"]),
        (["--principal", "bob"], ["denied", "cancelled", "rejected", "executed"]),
        (["--principal", "bob", "--status", "rejected"], ["rejected"]),
        (["--tool", "transfer_funds", "--limit", "2"], ["pending", "desk_yes"]),
        (["--tool", "close_account"], []),
        (["--limit", "0"], []),
    ],
    ids=["pending", "approved", "expired", "principal", "principal-status", "tool-limit", "no-such-tool-call", "0"],
)
async def test_filters(
    world: World, every_state: Ledger, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[str]
) -> None:
    shown = cli(world, capsys, *args)
    assert shown.returncode == 0
    assert list(blocks(shown.stdout)) == [every_state.refs[name] for name in expected]
    if not expected:
        assert shown.stdout == "no approvals\n"
        assert cli(world, capsys, *args, "--json").stdout == ""


async def test_what_a_caller_wrote_or_the_database_holds_is_shown_escaped(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A memo, principal, note or outcome edited to hold terminal controls, a bidi override or a line break
    that would start a line passing for another approval: each is printed as its escape, on its own line."""
    ref = world.pending("17.00", memo="rent").ref
    forged = "\nAPR-0000000000  executed  alice"
    world.sql(
        "UPDATE approvals SET principal = :p, arguments_json = :a, question = :q WHERE ref = :r",
        p="mallory\u202e" + forged,
        a=json.dumps({"amount": "7", "memo": "rent\x1b[2J\x1b]0;owned\x07"}),
        q="Approval required: transfer_funds\nTransfer $7.00\x1b[1A" + forged + "\nWhy: edited",
        r=ref,
    )
    shown = cli(world, capsys)
    assert shown.returncode == 0
    assert list(blocks(shown.stdout)) == [ref]  # no line starts another entry
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", shown.stdout)
    assert "mallory\\u202e\\nAPR-0000000000  executed  alice" in shown.stdout
    assert 'memo="rent\\u001b[2J\\u001b]0;owned\\u0007"' in shown.stdout  # the value's JSON, as the audit shows it
    assert "Transfer $7.00\\x1b[1A" in shown.stdout
    as_json = cli(world, capsys, "--json").stdout
    assert as_json.isascii() and len(as_json.splitlines()) == 1
    assert json.loads(as_json)["principal"] == "mallory\u202e" + forged


async def test_a_row_edited_past_parsing_is_shown_as_stored(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Arguments or an outcome no longer JSON, a time no calendar holds: the listing shows them, and goes on."""
    ref = world.pending("18.00").ref
    world.sql("UPDATE approvals SET arguments_json = '{not json', expires_at = 1e300 WHERE ref = :r", r=ref)
    shown = cli(world, capsys)
    assert shown.returncode == 0, shown.stderr
    assert "transfer_funds({not json)" in shown.stdout and "answer by (no time stored)" in shown.stdout
    assert json.loads(cli(world, capsys, "--json").stdout)["deadline"] is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--status", "approve"], "--status must be one of all, pending, approved, "),
        (["--status", "PENDING"], "--status must be one of"),
        (["--limit", "-1"], "--limit must be a whole number from 0 to 1,000,000"),
        (["--limit", "10000000000000000000000"], "--limit must be a whole number from 0 to 1,000,000"),
        (["--limit", "ten"], "argument --limit: invalid int value: 'ten'"),
        (["--tool", "transfer"], "--tool must be one of close_account, get_account_balance, transfer_funds"),
        (["--principal", ""], "--principal must name a principal"),
    ],
)
async def test_a_bad_flag_value_is_refused_naming_it(
    world: World, every_state: Ledger, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    before = dump(world)
    shown = cli(world, capsys, *args)
    assert (shown.returncode, shown.stdout) == (2, "")
    assert says in shown.stderr and len(shown.stderr.splitlines()) in (1, 5), shown.stderr  # argparse: usage too
    assert dump(world) == before


async def test_it_writes_nothing_to_a_ledger_being_served(
    world: World, every_state: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """The world's server state holds the ledger open: the listing, in each form, leaves every row as it was."""
    before = dump(world)
    for args in ([], ["--json"], ["--status", "approved"], ["--principal", "bob", "--limit", "1"]):
        assert cli(world, capsys, *args).returncode == 0
    assert dump(world) == before


def test_it_migrates_nothing(world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a ledger behind this release (a migration it has not applied) it is refused, naming the migration, and
    the ledger stays behind: a reader must not move it past the release its servers run."""
    future = Migration(99, "future_table", "CREATE TABLE future_table (x INTEGER)")
    shipped = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, future])
    before = dump(world)
    shown = cli(world, capsys)
    assert shown.returncode == 2 and "migration 0099_future_table is not applied" in shown.stderr, shown.stderr
    assert dump(world) == before


async def test_a_question_read_after_a_clock_step_back_is_shown_over(
    world: World,
    erin: DeskBrowser,
    passkey: SoftPasskey,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read on a clock set back an hour since they were asked, a question and a desk yes are over for the gate and
    the desk (`Approval.set_back`): the listing must not show them waiting with an hour and more left."""
    asked, yes = world.pending("19.00").ref, world.pending("20.00").ref
    assert (await erin.decide(yes, "approved", passkey)).status_code == 200
    monkeypatch.setattr(admin, "time", SimpleNamespace(time=lambda: time.time() - 3600))  # NTP set it back

    listed = blocks(cli(world, capsys).stdout)
    for ref in (asked, yes):
        assert "left" not in listed[ref] and "clock" in listed[ref], listed[ref]
    by_ref = {line["ref"]: line for line in map(json.loads, cli(world, capsys, "--json").stdout.splitlines())}
    assert by_ref[asked]["clock_set_back"] and by_ref[yes]["clock_set_back"]
    assert not by_ref[asked]["overdue_seconds"] and not by_ref[yes]["overdue_seconds"]


@approver_changes
async def test_a_desk_yes_its_approver_may_no_longer_give_is_shown_void_not_waiting(
    world: World, every_state: Ledger, capsys: pytest.CaptureFixture[str], change: Any, why: str
) -> None:
    """A yes whose approver was revoked, or linked to the requester, runs nothing when its caller continues; the
    listing still said it was waiting for its caller, by a time, as if the money would move then."""
    change(world)
    ref = every_state.refs["desk_yes"]
    block = blocks(cli(world, capsys).stdout)[ref]
    assert "waiting for its caller" not in block, block
    assert re.search(
        rf"approved at the desk by erin at .* UTC, note: fine; void: by erin, {re.escape(why)}.*, so nothing will run "
        r"\(the expiry sweep ends it denied\)$",
        block,
        re.MULTILINE,
    ), block
    line = {o["ref"]: o for o in map(json.loads, cli(world, capsys, "--json").stdout.splitlines())}[ref]
    assert (line["waiting_for_caller"], line["continue_by"]) == (False, None)
    assert line["void"].startswith(why), line
    assert list(blocks(cli(world, capsys, "--status", "approved").stdout)) == [ref], "still a yes nobody continued"
    assert world.state.expiry.sweep() == 2, "the next sweep ends it, as the listing says (and the overdue one)"
    listed = blocks(cli(world, capsys).stdout)
    assert (listed[ref].split()[1], listed[every_state.refs["overdue"]].split()[1]) == ("denied", "expired")


def _readme_json_keys() -> set[str]:
    """The top-level keys the README lists for `admin approvals --json` (a nested object's keys, in brackets after
    its name, left out)."""
    listed = text_of("README.md").split("`--json` keys:", 1)[1].split("(times in", 1)[0]
    top = re.sub(r"\([^)]*\)", "", " ".join(listed.split()))
    return set(re.findall(r"`([a-z_]+)`", top))
