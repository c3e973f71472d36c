"""Upgrade drill: ledgers written by older releases' own code, opened by this one.

The fixtures in `tests/fixtures/upgrade/` (see its README) were written by the releases at 4683253 (2026-12-03,
just before 0003-0006: no entitlements, no audit signatures) and 4c3148e (2026-12-05, just before 0014: desk and
grants). Each holds executed, rejected, keyed and closing calls and two approvals left pending, with what its
client was told. DEPLOYMENT.md "Upgrading an existing ledger" promises what survives; these tests hold each
promise on both backends.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import mcp_types as types
import psycopg
import pytest
from mcp import Client
from pydantic import SecretStr
from sqlalchemy import Connection, create_engine, text
from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_server.app import build_server, open_state
from mcp_server.audit.keys import load_signer
from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.approvers import ApproverAdmin
from mcp_server.desk.config import DESK_PATH
from mcp_server.desk.server import config_for
from mcp_server.desk.web import Desk
from mcp_server.settings import Settings
from mcp_server.storage import migrations
from mcp_server.storage.database import Database
from policy.testing import ScriptedResponder, approve
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser
from tests.server.cli_process import McpCli
from tests.server.test_cli_defaults import refused
from tests.support import (
    APPROVE,
    ASK,
    POSTGRES_URL_ENV,
    SHIPPED_POLICY,
    answer,
    create_schema,
    drop_schemas,
    keyed,
    outcome,
    postgres_base_url,
    url_with_search_path,
)

pytestmark = pytest.mark.anyio
T = TypeVar("T")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "upgrade"
RELEASES = ["4683253", "4c3148e"]
PRE_SIGNATURES = "4683253"  # before 0003-0006: grants and `audit adopt` are part of the upgrade
STATE_KEY = "upgrade-fixture-request-state-key-0123456789abcdef"  # the key the fixtures' rounds were sealed with


@dataclass
class OldLedger:
    release: str
    url: str
    key_file: Path
    facts: dict[str, Any]
    before: dict[str, Any]  # what the old release left, read before this release opens it

    def settings(self, principal: str = "alice") -> Settings:
        return Settings(
            db_url=self.url,
            policy=SHIPPED_POLICY,
            approval_timeout=300.0,
            seed_demo=False,
            principal=principal,
            audit_key_file=self.key_file,
            request_state_keys=SecretStr(STATE_KEY),
            _env_file=None,  # type: ignore[call-arg]
        )

    def client(self, responder: ScriptedResponder | None = None, principal: str = "alice") -> Client:
        settings = self.settings(principal)
        return Client(build_server(open_state(settings), settings), elicitation_callback=responder)

    def cli_env(self) -> dict[str, str]:
        return {"BANKGATE_DB_URL": self.url, "BANKGATE_AUDIT_KEY_FILE": str(self.key_file)}


def books(conn: Connection) -> dict[str, Any]:
    """Balances, the journal's sum, each account's entries, and the rows nobody may lose."""
    balances = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT id, status, balance_minor FROM accounts"))}
    entries: dict[str, int] = dict(
        conn.execute(text("SELECT account_id, SUM(amount_minor) FROM entries GROUP BY account_id")).all()
    )
    journal = conn.execute(text("SELECT COALESCE(SUM(amount_minor), 0) FROM entries")).scalar_one()
    counts = {
        t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
        for t in ("transactions", "entries", "idempotency_keys", "approvals", "audit_log")
    }
    approvals = sorted(tuple(r) for r in conn.execute(text("SELECT ref, tool, status FROM approvals")))
    return {"balances": balances, "entries": entries, "journal": int(journal), "counts": counts, "approvals": approvals}


def raw(url: str, work: Callable[[Connection], T]) -> T:
    """`work` done on the ledger as the old release left it, without this release's `Database` (which would
    migrate first), in one transaction."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            return work(conn)
    finally:
        engine.dispose()


LEDGERS = [pytest.param((r, "sqlite"), id=f"{r}-sqlite") for r in RELEASES] + [
    pytest.param((r, "postgresql"), id=f"{r}-postgresql", marks=pytest.mark.postgres) for r in RELEASES
]


@pytest.fixture(params=LEDGERS)
def old(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OldLedger]:
    """The release's ledger as it left it, in a file or schema of the test's own."""
    release, backend = request.param
    key_file = tmp_path / "audit.key"
    if (FIXTURES / f"{release}.audit.key").exists():
        shutil.copyfile(FIXTURES / f"{release}.audit.key", key_file)
        key_file.chmod(0o600)
    facts = json.loads((FIXTURES / f"{release}.{backend}.json").read_text())
    if backend == "sqlite":
        path = tmp_path / "ledger.db"
        shutil.copyfile(FIXTURES / f"{release}.sqlite.db", path)
        url = f"sqlite:///{path}"
        yield OldLedger(release, url, key_file, facts, raw(url, books))
        return
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run against PostgreSQL")
    schema = create_schema(base, "bankgate_upgrade")
    dump = (FIXTURES / f"{release}.postgresql.sql").read_text().replace("__SCHEMA__", schema)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}"')  # the dump creates it
        conn.execute(dump.encode())  # type: ignore[call-overload]
    url = url_with_search_path(base, schema)
    try:
        yield OldLedger(release, url, key_file, facts, raw(url, books))
    finally:
        drop_schemas(base, schema)


def upgrade(old: OldLedger, cli: McpCli) -> None:
    """DEPLOYMENT.md's procedure: `admin init` (applies the migrations); on a ledger from before
    entitlements, the grants the principals need."""
    result = cli("admin", "init", **old.cli_env())
    assert result.returncode == 0, result.stderr
    if old.release == PRE_SIGNATURES:
        for account in ("ACC-001", "ACC-002", "ACC-003"):
            granted = cli("admin", "grant", "alice", "owner", account, **old.cli_env())
            assert granted.returncode == 0, granted.stderr


def opened(old: OldLedger) -> Database:
    return Database.open(old.url)


def test_migrations_apply_and_every_balance_and_record_is_kept(old: OldLedger, cli: McpCli) -> None:
    upgrade(old, cli)
    db = opened(old)
    try:
        applied = db.read(lambda c: sorted(int(v) for (v,) in c.execute(text("SELECT version FROM schema_migrations"))))
        after = db.read(books)
    finally:
        db.close()
    assert applied == [m.version for m in migrations.available()]
    assert after["balances"] == old.before["balances"]
    assert after["journal"] == old.before["journal"] == 0
    assert all(after["balances"][a][1] == total for a, total in after["entries"].items())
    assert after["approvals"] == old.before["approvals"]
    for table in ("transactions", "entries", "idempotency_keys", "approvals"):
        assert after["counts"][table] == old.before["counts"][table], table
    assert after["counts"]["audit_log"] >= old.before["counts"]["audit_log"]  # and the upgrade's grants


def test_old_approvals_are_listed_by_admin_approvals(old: OldLedger, cli: McpCli) -> None:
    upgrade(old, cli)
    listed = cli("admin", "approvals", "--limit", "100", **old.cli_env())
    assert listed.returncode == 0, listed.stderr
    for ref, _tool, _status in old.before["approvals"]:
        assert ref in listed.stdout, ref
    pending = cli("admin", "approvals", "--status", "pending", **old.cli_env())
    assert pending.returncode == 0, pending.stderr
    waiting = [ref for ref, _tool, status in old.before["approvals"] if status == "pending"]
    assert len(waiting) == 2 and all(ref in pending.stdout for ref in waiting), pending.stdout


def schema_and_books(conn: Connection) -> dict[str, Any]:
    return {"migrations": sorted(conn.execute(text("SELECT version FROM schema_migrations")).scalars()), **books(conn)}


@pytest.mark.parametrize(
    "command",
    [
        ("admin", "deposit", "ACC-001", "12,50"),
        ("admin", "grant", "alice", "boss", "ACC-001"),
        ("admin", "roles", "grant", "bob", "king"),
        ("approvers", "add", "bad name"),
        ("audit", "checkpoint", "--out", "nowhere/head.json"),
        ("audit", "verify", "--checkpoint", "missing.json"),
        ("admin", "deposit", "ACC-001", "5.00"),
    ],
    ids=["bad amount", "bad relation", "bad role", "bad approver", "checkpoint nowhere", "no checkpoint", "deposit"],
)
def test_a_command_on_a_ledger_behind_this_release_migrates_nothing(
    old: OldLedger, cli: McpCli, command: tuple[str, ...]
) -> None:
    """Only `admin init` and `serve` migrate (README, DEPLOYMENT.md): a newer release on an operator's machine moved
    a ledger past the release its servers run, even for a command it then refused (a mistyped amount)."""
    before = raw(old.url, schema_and_books)
    refused(cli(*command, **old.cli_env()), "older than this bankgate", "bankgate-mcp admin init")
    assert raw(old.url, schema_and_books) == before


@pytest.mark.parametrize("command", [("admin", "init"), ("serve", "--no-desk")], ids=["init", "serve"])
@pytest.mark.parametrize("other", [False, True], ids=["missing key file", "another key"])
def test_a_start_refused_for_its_key_migrates_nothing(
    old: OldLedger, cli: McpCli, tmp_path: Path, command: tuple[str, ...], other: bool
) -> None:
    """A replica of the new release started without the shared key file (or with another) is refused: before, it
    had migrated the ledger past the release still serving it, and made a key of its own, for nothing."""
    if old.release == PRE_SIGNATURES:
        pytest.skip("release 4683253 signed no heads: any key file may start signing its chain")
    key = tmp_path / "new.key"
    if other:
        load_signer(key)
    before = raw(old.url, schema_and_books)
    env = old.cli_env() | {"BANKGATE_AUDIT_KEY_FILE": str(key)}
    refused(cli(*command, **env), str(key), "exist" if not other else "does not hold")
    assert raw(old.url, schema_and_books) == before
    assert key.exists() is other


PENDING = {"transfer_funds": "pending_transfer", "close_account": "pending_close"}
YES = {
    "transfer_funds": APPROVE,
    "close_account": types.ElicitResult(action="accept", content={"approve": True, "confirmation": "ACC-002"}),
}


def left_pending(old: OldLedger, tool: str) -> tuple[str, dict[str, Any]]:
    """The approval the old release left open for `tool`, and the call it was asked for."""
    ref = next(r for r, t, status in old.before["approvals"] if t == tool and status == "pending")
    return ref, old.facts[PENDING[tool]]


def moved_as_shown(old: OldLedger, tool: str, result: dict[str, Any]) -> None:
    """`result` ran what the old question showed (42.00 to ACC-002 with its memo; ACC-002's 340.50 swept), once."""
    before = {a: b for a, (_s, b) in old.before["balances"].items()}
    after = balances(old)
    assert result["status"] == "executed", result
    if tool == "transfer_funds":
        assert (result["receipt"]["amount_minor"], result["receipt"]["memo"]) == (4200, "left open")
        assert (after["ACC-001"], after["ACC-002"]) == (before["ACC-001"] - 4200, before["ACC-002"] + 4200)
    else:
        assert result["receipt"]["swept_amount_minor"] == 34050
        assert (after["ACC-001"], after["ACC-002"]) == (before["ACC-001"] + 34050, 0)


def nothing_moved(old: OldLedger, ref: str) -> None:
    assert balances(old) == {a: b for a, (_s, b) in old.before["balances"].items()}
    assert (ref, "pending") in [(r, status) for r, _t, status in opened_books(old)["approvals"]]


@pytest.mark.parametrize("tool", ["transfer_funds", "close_account"])
async def test_a_round_open_during_the_upgrade_runs_once_as_shown_or_is_asked_anew(
    old: OldLedger, cli: McpCli, tool: str
) -> None:
    """Its second round, answered yes after the upgrade (twice). 4c3148e's runs once, as its question showed;
    4683253's (before 0006: no question digest) gets a new question each time, and nothing runs."""
    upgrade(old, cli)
    ref, asked = left_pending(old, tool)
    async with old.client(ScriptedResponder()) as client:
        first = await answer(client, tool, asked["arguments"], asked["request_state"], YES[tool])
        again = await answer(client, tool, asked["arguments"], asked["request_state"], YES[tool])
    if old.release == PRE_SIGNATURES:
        assert isinstance(first, types.InputRequiredResult) and isinstance(again, types.InputRequiredResult)
        question = first.input_requests[ASK].params.message  # type: ignore[index, union-attr]
        assert ref not in question and ("$42.00" in question or "$340.50" in question), question
        nothing_moved(old, ref)
    else:
        moved_as_shown(old, tool, outcome(first))
        assert outcome(again) == outcome(first)


async def test_a_keyed_retry_returns_the_stored_outcome(old: OldLedger, cli: McpCli) -> None:
    upgrade(old, cli)
    stored = old.facts["keyed"]
    args = {"from_account": "ACC-002", "to_account": "ACC-003", "amount": "30"}
    async with old.client(ScriptedResponder()) as client:
        retried = outcome(await client.call_tool("transfer_funds", args, meta=keyed("fixture-keyed-1")))
    assert retried["status"] == "executed"
    assert retried["receipt"]["transaction_id"] == stored["receipt"]["transaction_id"]
    assert retried["approval_ref"] == stored["approval_ref"]
    assert balances(old) == {a: b for a, (_s, b) in old.before["balances"].items()}


async def test_the_audit_verifies_after_the_upgrade_and_catches_a_later_edit(old: OldLedger, cli: McpCli) -> None:
    upgrade(old, cli)
    async with old.client(ScriptedResponder(approve())) as client:  # the server's sequencer chains the backlog
        done = outcome(
            await client.call_tool(
                "transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1.25"}
            )
        )
    assert done["status"] == "executed", done
    verified = cli("audit", "verify", **old.cli_env())
    if old.release == PRE_SIGNATURES:
        assert verified.returncode == 1 and "audit adopt" in verified.stdout + verified.stderr
        adopted = cli("audit", "adopt", **old.cli_env())
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        verified = cli("audit", "verify", **old.cli_env())
    assert verified.returncode == 0, verified.stdout + verified.stderr
    db = opened(old)
    try:
        db.run(lambda c: c.execute(text("UPDATE audit_log SET amount_minor = amount_minor + 1 WHERE seq = 3")))
    finally:
        db.close()
    tampered = cli("audit", "verify", **old.cli_env())
    assert tampered.returncode == 1 and "record 3: content does not match its hash" in tampered.stdout, tampered


async def test_new_calls_work_after_the_upgrade(old: OldLedger, cli: McpCli) -> None:
    upgrade(old, cli)
    args = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "10.00", "memo": "after upgrade"}
    responder = ScriptedResponder(approve())
    async with old.client(responder) as client:
        done = outcome(await client.call_tool("transfer_funds", args, meta=keyed("after-upgrade-1")))
        replay = outcome(await client.call_tool("transfer_funds", args, meta=keyed("after-upgrade-1")))
        balance = outcome(await client.call_tool("get_account_balance", {"account_id": "ACC-002"}))
    assert done["status"] == "executed" and replay == done
    assert "Transfer $10.00" in responder.questions[0].message
    before = old.before["balances"]
    assert balance["balance_minor"] == before["ACC-002"][1] + 1000


def test_desk_approvers_and_their_links_are_kept(old: OldLedger, cli: McpCli) -> None:
    if old.release == PRE_SIGNATURES:
        pytest.skip("release 4683253 had no approval desk")
    upgrade(old, cli)
    listed = cli("approvers", "list", **old.cli_env())
    assert listed.returncode == 0, listed.stderr
    dana = [line for line in listed.stdout.splitlines() if line.startswith("dana")]
    assert len(dana) == 1 and "invited" in dana[0] and "acts as: alice" in dana[0], listed.stdout


def opened_books(old: OldLedger) -> dict[str, Any]:
    db = opened(old)
    try:
        return db.read(books)
    finally:
        db.close()


def balances(old: OldLedger) -> dict[str, int]:
    db = opened(old)
    try:
        return db.read(lambda c: dict(c.execute(text("SELECT id, balance_minor FROM accounts")).all()))
    finally:
        db.close()


DESK_PORT = 8797  # named in the desk's origin only; nothing listens on it


@pytest.mark.parametrize("tool", ["transfer_funds", "close_account"])
async def test_an_approval_open_during_the_upgrade_decided_at_the_desk_runs_once_as_shown_or_is_refused(
    old: OldLedger, cli: McpCli, tool: str
) -> None:
    """A desk yes after the upgrade, continued by `approval_ref` (twice). 4c3148e's runs once as shown;
    4683253's is refused naming why (asked before the upgrade), nothing moved."""
    upgrade(old, cli)
    ref, asked = left_pending(old, tool)
    settings = old.settings().model_copy(update={"desk_port": DESK_PORT})
    db = opened(old)
    audit = AuditWriter(old.key_file)
    token, _ = ApproverAdmin(db, audit).add("erin")
    passkey = SoftPasskey(origin=f"http://localhost:{DESK_PORT}")
    config = config_for(settings, DESK_PORT)
    app = Starlette(routes=[Mount(DESK_PATH, app=Desk(db, audit, config).app())])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=config.origin) as http:
        desk = DeskBrowser(http, config.origin)
        assert (await desk.enroll(token, passkey)).status_code == 200
        issued = await desk.challenge(ref, "approved")
        body = {"verdict": "approved", "confirmation": "ACC-002", "nonce": issued["nonce"]}
        decided = await desk.post(f"/approvals/{ref}/decide", body | {"credential": passkey.sign(issued["options"])})
    db.close()
    assert decided.status_code == 200, decided.text
    async with old.client(ScriptedResponder()) as client:
        first = outcome(await client.call_tool(tool, {**asked["arguments"], "approval_ref": ref}))
        again = outcome(await client.call_tool(tool, {**asked["arguments"], "approval_ref": ref}))
    assert again == first
    if old.release == PRE_SIGNATURES:
        assert first["status"] == "failed" and first["error"]["code"] == "approval_mismatch", first
        assert "before this server was upgraded" in first["message"], first["message"]
        nothing_moved(old, ref)
    else:
        moved_as_shown(old, tool, first)


def test_old_approvals_past_their_deadline_are_ended_expired_and_the_audit_verifies(
    old: OldLedger, cli: McpCli
) -> None:
    """The usual upgrade: the old release's questions ran out while it was down. The first sweep ends each
    `expired` with its signed record and key outcome; `audit verify` (after `audit adopt` where needed) holds."""
    raw(old.url, lambda c: c.execute(text("UPDATE approvals SET expires_at = expires_at - 20 * 365 * 86400.0")))
    upgrade(old, cli)
    state = open_state(old.settings())
    try:
        assert state.expiry.sweep() == 2
        state.sequencer.sequencer.chain()
    finally:
        state.ledger.db.close()
    statuses = {ref: status for ref, _t, status in opened_books(old)["approvals"]}
    waiting = [ref for ref, _t, status in old.before["approvals"] if status == "pending"]
    assert [statuses[ref] for ref in waiting] == ["expired", "expired"]
    if old.release == PRE_SIGNATURES:
        adopted = cli("audit", "adopt", **old.cli_env())
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    verified = cli("audit", "verify", **old.cli_env())
    assert verified.returncode == 0, verified.stdout + verified.stderr


WAITING = "0000000000000000-waiting-0000"
"""Sorts before every record the upgraded server writes; the one slipped in after the upgrade sorts before it."""


def signed_before_ledger_ids(old: OldLedger, conn: Connection, rid: str) -> dict[str, Any]:
    """A record as the old release signed it (naming no ledger, with the fixture's key), unchained: a call it
    denied, moving no money and naming no approval."""
    row = dict(conn.execute(text("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1")).mappings().one())
    record = {**row, "rid": rid, "seq": None, "prev_hash": None, "hash": None, "event": "denied", "amount_minor": 0,
              "approval_ref": None, "question_sha256": None, "result_json": None, "currency": None}  # fmt: skip
    record["signature"] = load_signer(old.key_file, create=False).sign_record(record, None)
    return record


def insert_record(conn: Connection, record: dict[str, Any]) -> None:
    conn.execute(text(f"INSERT INTO audit_log ({', '.join(record)}) VALUES (:{', :'.join(record)})"), record)


def test_records_signed_before_ledger_ids_verify_after_the_upgrade_and_no_later_one_does(
    old: OldLedger, cli: McpCli
) -> None:
    """0019 leaves room for exactly the records the ledger held, chained or still waiting (the old release
    stopped before chaining one): they verify as signed, and the first start chains the waiting one under a head
    naming the ledger; a record signed that old way and slipped in later (another ledger's, its key being this
    one's), even one sorting first, is refused."""
    if old.release == PRE_SIGNATURES:
        pytest.skip("release 4683253 signed no records")
    raw(old.url, lambda c: insert_record(c, signed_before_ledger_ids(old, c, WAITING)))
    held = raw(old.url, lambda c: c.execute(text("SELECT COUNT(*) FROM audit_log")).scalar_one())
    upgrade(old, cli)
    db = opened(old)
    try:
        identity = db.read(lambda c: c.execute(text("SELECT id, unnamed_through FROM ledger_identity")).one())
        last = db.read(lambda c: c.execute(text("SELECT seq, ledger FROM audit_heads ORDER BY seq DESC")).first())
        db.run(lambda c: insert_record(c, signed_before_ledger_ids(old, c, "0000000000000000-slipped-0000")))
    finally:
        db.close()
    assert identity.unnamed_through == held
    assert last is not None and (last.seq, last.ledger) == (held, identity.id)  # chained at the upgrade's start
    verified = cli("audit", "verify", **old.cli_env())
    assert verified.returncode == 1, verified.stdout
    assert verified.stdout.count("\n  ") == 1, verified.stdout  # only the one slipped in
    assert "unchained record 0000000000000000-slipped-0000: is signed naming no ledger" in verified.stdout
    seq = text("SELECT seq FROM audit_log WHERE rid = :r")
    assert raw(old.url, lambda c: c.execute(seq, {"r": WAITING}).scalar_one()) == held


def test_the_upgrade_signs_the_last_head_again_naming_the_ledger(old: OldLedger, cli: McpCli) -> None:
    """Nothing waiting, nothing written since: the first start (`admin init`) signs the last head again for the
    ledger (same position and hash), so its id is covered at once; the old heads before it stay as signed."""
    if old.release == PRE_SIGNATURES:
        pytest.skip("release 4683253 signed no heads: its first batch covers its records (after `audit adopt`)")
    heads = "SELECT seq, hash{} FROM audit_heads ORDER BY seq"
    before = [(*head, None) for head in raw(old.url, lambda c: c.execute(text(heads.format(""))).all())]
    upgrade(old, cli)
    db = opened(old)
    try:
        after = [tuple(head) for head in db.read(lambda c: c.execute(text(heads.format(", ledger"))).all())]
        ledger = db.read(lambda c: c.execute(text("SELECT id FROM ledger_identity")).scalar_one())
    finally:
        db.close()
    assert after == [*before[:-1], (*before[-1][:2], ledger)]
    verified = cli("audit", "verify", "--public-keys", str(public_keys(old, cli)), **old.cli_env())
    assert verified.returncode == 0, verified.stdout + verified.stderr


def public_keys(old: OldLedger, cli: McpCli) -> Path:
    printed = cli("audit", "public-key", **old.cli_env())
    assert printed.returncode == 0, printed.stderr
    path = old.key_file.with_name("audit.pub")
    path.write_text(printed.stdout)
    return path
