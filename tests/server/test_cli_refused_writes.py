"""A change command pointed at a ledger it may only read (a read-only SQLite file, a PostgreSQL role granted only
SELECT, as an operator's or auditor's is): one line naming the refusal, exit 2, nothing changed, no traceback.

It was a logged traceback and "unavailable right now; please try again shortly" (SQLite), or "unexpected
ProgrammingError" with the SQL statement over several lines and exit 1 (PostgreSQL): neither said what to fix."""

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mcp_server.audit.keys import KEY_FILE_ENV
from mcp_server.cli.main import main
from mcp_server.ledger.entitlements import grants
from mcp_server.storage import database
from policy.testing import ScriptedResponder, approve
from tests.server.cli_process import clean_env
from tests.server.harness import Harness
from tests.server.test_cli_defaults import refused
from tests.support import postgres_schema

pytestmark = pytest.mark.anyio

CHANGES = [
    ("admin", "grant", "dave", "viewer", "ACC-002"),
    ("admin", "deposit", "ACC-001", "5.00"),
    ("approvers", "add", "dora"),
]


def read_only(configure: Callable[[Any, object], None]) -> Callable[[Any, object], None]:
    """SQLite connections that answer writes as a file this user may only read does (SQLITE_READONLY): the tests
    run as root, whom a file's mode does not stop."""

    def connect(connection: Any, record: object) -> None:
        configure(connection, record)
        connection.execute("PRAGMA query_only = ON")

    return connect


READ_ONLY_PROCESS = """
import sys
from mcp_server.cli.main import main
from mcp_server.storage import database
from tests.server.test_cli_refused_writes import read_only

database._configure_sqlite_connection = read_only(database._configure_sqlite_connection)
sys.exit(main())
"""


def snapshot(harness: Harness) -> tuple[object, ...]:
    balances = [harness.balance(account) for account in ("ACC-001", "ACC-002")]
    return (grants(harness.db), balances, len(harness.audit()))


def in_process(capsys: pytest.CaptureFixture[str], *args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    capsys.readouterr()
    code = main([*args, "--db", db_url])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture
def sqlite_demo(tmp_path: Path) -> Harness:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    harness.ledger.seed_demo()
    return harness


@pytest.mark.parametrize("command", CHANGES, ids=lambda c: " ".join(c[:2]))
def test_a_read_only_sqlite_ledger_is_named_in_one_line(
    sqlite_demo: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    before = snapshot(sqlite_demo)
    monkeypatch.setattr(database, "_configure_sqlite_connection", read_only(database._configure_sqlite_connection))
    done = in_process(capsys, *command, db_url=sqlite_demo.db_url)
    refused(done, "attempt to write a readonly database", "nothing was changed")
    assert done.stdout == ""
    assert snapshot(sqlite_demo) == before


def test_no_traceback_reaches_the_terminal(sqlite_demo: Harness, tmp_path: Path) -> None:
    """In a process of its own, where logging has no handler but its last resort, which prints warnings."""
    done = subprocess.run(
        [sys.executable, "-c", READ_ONLY_PROCESS, *CHANGES[0], "--db", sqlite_demo.db_url],
        cwd=tmp_path,
        env={**clean_env(tmp_path), KEY_FILE_ENV: os.environ[KEY_FILE_ENV], "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    refused(done, "attempt to write a readonly database")


@pytest.fixture
def postgres_demo() -> Iterator[tuple[Harness, str]]:
    """A PostgreSQL demo ledger and the URL of a role that may only read it (dropped afterwards)."""
    with postgres_schema("bankgate_readonly") as url:
        harness = Harness("memory", url)
        harness.ledger.seed_demo()
        role = f"reader_{uuid.uuid4().hex[:12]}"
        schema = harness.db.read(lambda conn: conn.execute(text("SELECT current_schema()")).scalar_one())
        admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
            try:
                yield harness, make_url(url).set(username=role).render_as_string(hide_password=False)
            finally:
                conn.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
                harness.db.close()


@pytest.mark.postgres
@pytest.mark.parametrize("command", CHANGES, ids=lambda c: " ".join(c[:2]))
def test_a_postgresql_role_that_may_only_read_is_named_in_one_line(
    postgres_demo: tuple[Harness, str], capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    harness, reader = postgres_demo
    before = snapshot(harness)
    done = in_process(capsys, *command, db_url=reader)
    refused(done, "permission denied for table", "nothing was changed")
    assert "INSERT" not in done.stderr and "UPDATE" not in done.stderr  # no SQL statement
    assert snapshot(harness) == before


@pytest.mark.postgres
@pytest.mark.parametrize(
    "command", [("admin", "approvals"), ("audit", "verify", "--public-keys")], ids=["admin approvals", "audit verify"]
)
def test_a_read_the_role_may_not_make_names_reading_not_writing(
    postgres_demo: tuple[Harness, str], capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A read-only command under a role without SELECT on a table it reads: the one line says what reading needs.
    It said "Writing needs a user that may write the ledger": a role given write privileges would still fail."""
    harness, reader = postgres_demo
    role = make_url(reader).username
    harness.db.run(lambda conn: conn.execute(text(f'REVOKE SELECT ON approvals FROM "{role}"')))
    if command[-1] == "--public-keys":
        assert main(["audit", "public-key"]) == 0
        (public := tmp_path / "audit.pub").write_text(capsys.readouterr().out)
        command = (*command, str(public))
    line = refused(in_process(capsys, *command, db_url=reader), "permission denied for table approvals")
    assert "Writing" not in line and "SELECT" in line, line


@pytest.mark.postgres
async def test_a_tool_call_the_database_refuses_tells_the_caller_no_internals(
    postgres_demo: tuple[Harness, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A server whose role loses a privilege mid-service: the caller (a model) is told the ledger refused the change
    and nothing was done, not the database's own words (table names, the operator's fix); the log says those."""
    harness, reader = postgres_demo
    role = make_url(reader).username
    schema = harness.db.read(lambda conn: conn.execute(text("SELECT current_schema()")).scalar_one())
    harness.db.run(lambda conn: conn.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')))
    harness.db.run(lambda conn: conn.execute(text(f'REVOKE SELECT ON accounts FROM "{role}"')))
    before = snapshot(harness)
    async with Harness("memory", reader).client(ScriptedResponder(approve())) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5.00"}
        )
    error = result.structured_content["error"] if result.structured_content else {}
    assert error.get("code") == "database_unavailable", result
    said = str(result.content)
    assert "nothing was" in said and "permission denied" not in said and "table" not in said, said
    assert any("permission denied for table accounts" in r.getMessage() for r in caplog.records)
    assert snapshot(harness) == before
