"""Defaults that cannot hurt a ledger: only the zero-configuration embedded ledger is created (and
given demo money) on its own; a named one must exist, and read-only commands never create one.

Commands run in this process (`cli`) unless they serve: `serve` that serves, `--version` and
`--help` run as a user's shell runs them (`run_cli`, a subprocess)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.cli_process import McpCli, embedded_ledger, run_cli
from tests.support import free_port, postgres_schema

ONE_LINE_ERROR = 2


def refused(done: subprocess.CompletedProcess[str], *says: str) -> str:
    """The single stderr line of a refused command, which must say each of `says`."""
    assert done.returncode == ONE_LINE_ERROR, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for part in says:
        assert part in lines[0]
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["admin", "accounts"],  # every admin command but init opens the ledger the same way
        ["audit", "tail"],  # and so do audit verify and tail
        ["policy", "explain", "get_account_balance", "--args", '{"account_id": "ACC-001"}'],
        ["serve"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_mistyped_database_is_an_error_and_creates_nothing(tmp_path: Path, command: list[str], cli: McpCli) -> None:
    done = cli(*command, "--db", "notaurl")
    refused(done, "no ledger at notaurl", "admin init")
    assert not (tmp_path / "notaurl").exists()
    assert not embedded_ledger(tmp_path).exists()


def test_a_missing_sqlite_file_is_not_created_by_audit_verify(tmp_path: Path, cli: McpCli) -> None:
    done = cli("audit", "verify", "--db", "sqlite:///typo.db")
    refused(done, "no ledger at sqlite:///typo.db")
    assert not (tmp_path / "typo.db").exists()


def test_two_slashes_get_a_hint(cli: McpCli) -> None:
    refused(cli("admin", "accounts", "--db", "sqlite://ledger.db"), "three slashes", "sqlite:////")


@pytest.mark.parametrize("query", ["?mode=ro", "?uri=true&mode=ro", "?timeout=abc", "?foo"])
@pytest.mark.parametrize("command", [["admin", "init"], ["admin", "accounts"]], ids=lambda c: " ".join(c))
def test_a_sqlite_url_with_a_query_is_refused_and_creates_nothing(
    tmp_path: Path, cli: McpCli, command: list[str], query: str
) -> None:
    """The driver ignored what it does not take (`mode=ro`: the ledger was written all the same), made a file named
    `l.db?mode=ro` beside the ledger for `uri=true&mode=ro`, or failed on `timeout=abc` once the ledger's file was
    made. bankgate sets SQLite's options itself: a query is refused, naming its keys."""
    (tmp_path / "bank.db").touch()
    done = cli(*command, "--db", f"sqlite:///l.db{query}")
    refused(done, "a SQLite URL takes no query", query.lstrip("?").split("=")[0], "%3F")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.db"]


def test_the_embedded_default_is_created_with_demo_accounts(tmp_path: Path, cli: McpCli) -> None:
    served = run_cli(tmp_path, "serve")
    assert served.returncode == 0, served.stderr
    assert embedded_ledger(tmp_path).exists()
    listed = cli("admin", "accounts")
    assert "ACC-001" in listed.stdout and "$5,000.00" in listed.stdout


def test_read_only_commands_do_not_create_the_embedded_default(tmp_path: Path, cli: McpCli) -> None:
    refused(cli("audit", "verify"), "no ledger at")
    assert not embedded_ledger(tmp_path).exists()


def test_a_named_ledger_is_created_only_when_asked_and_without_demo_money(tmp_path: Path, cli: McpCli) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    assert run_cli(tmp_path, "serve", "--db", url, "--create").returncode == 0
    assert cli("admin", "accounts", "--db", url).stdout == ""
    demo = f"sqlite:///{tmp_path / 'demo.db'}"
    initialised = cli("admin", "init", "--db", demo, "--seed-demo")
    assert initialised.returncode == 0 and "3 accounts" in initialised.stdout
    assert "ACC-003" in cli("admin", "accounts", "--db", demo).stdout


def test_environment_url_counts_as_named(tmp_path: Path, cli: McpCli) -> None:
    done = cli("serve", BANKGATE_DB_URL=f"sqlite:///{tmp_path / 'env.db'}")
    refused(done, "no ledger at")
    assert not (tmp_path / "env.db").exists()


@pytest.mark.postgres
def test_postgresql_is_never_created_or_seeded_by_default(tmp_path: Path, cli: McpCli) -> None:
    with postgres_schema("bankgate_cli") as url:
        refused(cli("serve", "--db", url), "holds no bankgate ledger", "admin init")
        assert run_cli(tmp_path, "serve", "--db", url, "--create").returncode == 0
        assert cli("admin", "accounts", "--db", url).stdout == ""  # no invented money
        assert cli("audit", "verify", "--db", url).stdout.startswith("audit chain intact")


def test_an_unreachable_postgresql_is_one_line_naming_the_server(cli: McpCli) -> None:
    port = free_port()  # nobody listens there
    url = f"postgresql://bank:secret@127.0.0.1:{port}/bank"
    args = ("audit", "verify", "--db", url)
    line = refused(cli(*args), f"127.0.0.1:{port}", "Connection refused")
    assert "secret" not in line
    for debug in (cli("--debug", "audit", "verify", "--db", url), cli(*args, "--debug")):
        assert debug.returncode == ONE_LINE_ERROR and "Traceback" in debug.stderr


def test_version_and_a_help_that_imports_nothing_heavy(tmp_path: Path) -> None:
    version = run_cli(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("bankgate-mcp ")
    probe = (
        "import sys\nfrom mcp_server.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('mcp', 'sqlalchemy', 'uvicorn', 'azure') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"
