"""`bankgate-mcp admin grant|revoke|grants|roles`: what a shell user sees, exit codes and all.

The CLI's `main` runs in process (its exit code is the process's: `python -m mcp_server` is
`sys.exit(main())`, which tests/server/test_cli_defaults.py runs as a real process).
"""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from mcp_server.cli.main import main
from mcp_server.ledger.entitlements import grants
from tests.server.harness import Harness
from tests.support import snapshot


@pytest.fixture
def demo(tmp_path: Path) -> Harness:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    harness.ledger.seed_demo()
    return harness


@pytest.fixture
def cli(demo: Harness, capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`bankgate-mcp <args> --db <the demo ledger>`: its exit code, stdout and stderr."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main([*args, "--db", demo.db_url])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def standing(harness: Harness) -> list[tuple[str, str | None, str]]:
    return [(g.principal, g.account_id, g.name) for g in grants(harness.db)]


def test_admin_grants_revokes_and_lists_entitlements_and_audits_each_change(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    assert cli("admin", "grant", "dave", "viewer", "ACC-002", "--by", "ops").stdout == (
        "granted: dave is viewer of ACC-002\n"
    )
    assert cli("admin", "roles", "grant", "erin", "operator", "--by", "ops").returncode == 0
    assert cli("admin", "revoke", "bob", "owner", "ACC-002", "--by", "ops").stdout == (
        "revoked: bob is no longer owner of ACC-002\n"
    )
    again = cli("admin", "grant", "dave", "viewer", "ACC-002")
    assert (again.returncode, again.stdout) == (0, "unchanged: dave already is viewer of ACC-002\n")

    by_account = cli("admin", "grants", "--account", "ACC-002").stdout.splitlines()
    assert [line.split()[:3] for line in by_account] == [
        ["dave", "viewer", "on"],
        ["erin", "operator", "role"],  # an operator acts on every account, so it bears on this one
        ["local", "operator", "role"],
    ]
    assert "granted by admin:ops" in by_account[0]
    by_principal = cli("admin", "grants", "--principal", "alice").stdout.splitlines()
    assert [line.split()[:4] for line in by_principal] == [["alice", "owner", "on", "ACC-001"]]

    changes = [(r["event"], r["principal"], r["arguments"]) for r in demo.audit(tool="entitlements")]
    assert changes == [
        ("granted", "admin:ops", {"principal": "dave", "relation": "viewer", "account_id": "ACC-002"}),
        ("granted", "admin:ops", {"principal": "erin", "role": "operator"}),
        ("revoked", "admin:ops", {"principal": "bob", "relation": "owner", "account_id": "ACC-002"}),
    ]  # the unchanged second grant is not a change, so it is not recorded
    assert cli("admin", "roles", "revoke", "erin", "operator").returncode == 0
    assert ("erin", None, "operator") not in standing(demo)
    verified = cli("audit", "verify")
    assert verified.stdout == "audit chain intact: 7 records\n"  # the seed's 3 fundings and 4 changes


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("grant", "dave", "owner", "ACC-999"), "refused (unknown_account): Account ACC-999 does not exist."),
        (("grant", "dave", "admin", "ACC-001"), "refused (invalid_relation): relation must be one of: owner, viewer."),
        (("grant", "dave", "owner", "acc-1"), "refused (invalid_account_id): account_id must use upper-case"),
        (("grant", "dave\u202e", "owner", "ACC-001"), "refused (invalid_principal): principal must be 1 to"),
        (("roles", "grant", "dave", "root"), "refused (invalid_role): role must be one of: operator."),
        (("revoke", "carol", "owner", "ACC-001"), "refused (not_granted): carol is not owner of ACC-001;"),
        (("roles", "revoke", "alice", "operator"), "refused (not_granted): alice does not have the role operator;"),
        (("grants", "--account", "ACC-999"), "refused (unknown_account): Account ACC-999 does not exist."),
    ],
    ids=["unknown-account", "relation", "account-id", "principal", "role", "revoke-nothing", "role-nothing", "list"],
)
def test_bad_admin_input_is_one_clear_line_exit_2_and_changes_nothing(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]], args: tuple[str, ...], says: str
) -> None:
    before, audited = standing(demo), demo.audit()
    result = cli("admin", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("bankgate-mcp: " + says)
    assert standing(demo) == before and demo.audit() == audited


def test_any_name_a_credential_can_carry_can_be_granted(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """The grant takes principal names by the rule tokens and JWTs are held to (`free_text.is_principal_name`):
    a principal who can sign in as `José Álvarez` can be given access, and no one is granted by a name that
    could never sign in."""
    assert cli("admin", "grant", "José Álvarez", "viewer", "ACC-002").returncode == 0
    assert ("José Álvarez", "ACC-002", "viewer") in standing(demo)
    assert cli("admin", "grant", " José", "viewer", "ACC-002").returncode == 2
    assert cli("admin", "grant", "\u0430lice", "viewer", "ACC-002").returncode == 2  # Cyrillic а: never alice


def test_a_principal_granted_under_an_earlier_name_rule_can_still_be_found_and_revoked(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """The name rule holds new grants (`Bob  Smith`'s two spaces are refused now); one an earlier release granted
    stays in the ledger, and the operator must still be able to list, filter and revoke it."""
    legacy = "Bob  Smith"
    granted = {"p": legacy, "by": "admin:ops", "at": "2026-01-01T00:00:00.000000Z"}
    demo.db.run(
        lambda conn: conn.execute(
            text(
                "INSERT INTO account_access (principal, account_id, relation, granted_by, granted_at)"
                " VALUES (:p, 'ACC-002', 'viewer', :by, :at)"
            ),
            granted,
        )
    )
    demo.db.run(
        lambda conn: conn.execute(
            text(
                "INSERT INTO principal_roles (principal, role, granted_by, granted_at)"
                " VALUES (:p, 'operator', :by, :at)"
            ),
            granted,
        )
    )
    assert cli("admin", "grant", legacy, "viewer", "ACC-001").returncode == 2  # new grants keep the rule

    listed = cli("admin", "grants", "--principal", legacy)
    assert [line.split()[2:4] for line in listed.stdout.splitlines()] == [["operator", "role"], ["viewer", "on"]]
    assert cli("admin", "approvals", "--principal", legacy).stdout == "no approvals\n"
    revoked = cli("admin", "revoke", legacy, "viewer", "ACC-002")
    assert (revoked.returncode, revoked.stderr) == (0, "")
    assert cli("admin", "roles", "revoke", legacy, "operator").returncode == 0
    assert [g for g in standing(demo) if g[0] == legacy] == []


def test_a_grant_stored_under_a_name_now_reserved_can_be_listed_and_revoked(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """A grant to `approver:eve` (from before such names were reserved, or written into the table) would let a token
    of that name act; `EntitlementAdmin.revoke` takes it away, but the command line checked the name as the stdio
    caller's setting and refused ("configuration: principal: ... may not be"), so it could be neither listed by
    principal nor revoked."""
    demo.db.run(
        lambda conn: conn.execute(
            text(
                "INSERT INTO account_access (principal, account_id, relation, granted_by, granted_at)"
                " VALUES ('approver:eve', 'ACC-001', 'owner', 'admin:old', '2025-01-01T00:00:00.000000Z')"
            )
        )
    )
    listed = cli("admin", "grants", "--principal", "approver:eve")
    assert (listed.returncode, listed.stdout.split()[:4]) == (0, ["approver:eve", "owner", "on", "ACC-001"])
    revoked = cli("admin", "revoke", "approver:eve", "owner", "ACC-001", "--by", "ops")
    assert (revoked.returncode, revoked.stderr) == (0, "")
    assert ("approver:eve", "ACC-001", "owner") not in standing(demo)
    assert cli("admin", "grant", "approver:eve", "owner", "ACC-001").returncode == 2, "never granted again"


ESCAPE = "\x1b[2K\rledger invariants hold"
"""What a database writer might plant: erase the line, return, and print a reassurance in its place."""


@pytest.mark.parametrize(
    ("edit", "args"),
    [
        ("UPDATE accounts SET owner = :text WHERE id = 'ACC-001'", ("admin", "accounts")),
        ("UPDATE transactions SET memo = :text", ("admin", "history", "ACC-001")),
        ("UPDATE account_access SET principal = :text, granted_by = :text", ("admin", "grants")),
        ("UPDATE principal_roles SET granted_at = :text", ("admin", "grants")),
        (
            "INSERT INTO accounts (id, kind, owner, currency, status, balance_minor, created_at)"
            " VALUES (:text, 'customer', 'Eve', 'USD', 'open', 5, '2026-01-01T00:00:00.000000Z')",
            ("admin", "invariants"),
        ),
        (
            "UPDATE accounts SET owner = :text WHERE id = 'ACC-002'",
            ("policy", "explain", "transfer_funds", "--args", '{"from_account": "ACC-001", "to_account": "ACC-002", '
             '"amount": "5"}'),
        ),
    ],
    ids=["account-owner", "memo", "grant", "grant-time", "invariant-violation", "explained-effect"],
)  # fmt: skip
def test_listings_show_text_edited_into_the_database_escaped(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]], edit: str, args: tuple[str, ...]
) -> None:
    """Values written through bankgate are visible text; the database can still be edited behind its back, and
    what the command line prints from it must never drive the operator's terminal."""
    demo.db.run(lambda conn: conn.execute(text(edit), {"text": ESCAPE}))
    printed = cli(*args).stdout
    assert "\x1b" not in printed and "\r" not in printed
    assert "\\x1b[2K\\rledger invariants hold" in printed


def test_grants_show_an_account_id_edited_into_the_database_escaped(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """`admin accounts` shows such an id escaped; `admin grants` printed it as it was."""
    edits = (
        "INSERT INTO accounts (id, kind, owner, currency, status, balance_minor, created_at)"
        " VALUES (:text, 'customer', 'Eve', 'USD', 'open', 0, '2026-01-01T00:00:00.000000Z')",
        "INSERT INTO account_access (principal, account_id, relation, granted_by, granted_at)"
        " VALUES ('eve', :text, 'owner', 'ops', '2026-01-01T00:00:00.000000Z')",
    )
    demo.db.run(lambda conn: [conn.execute(text(edit), {"text": ESCAPE}) for edit in edits])
    printed = cli("admin", "grants", "--principal", "eve").stdout
    assert "\x1b" not in printed and "\r" not in printed
    assert "on \\x1b[2K\\rledger invariants hold" in printed


def test_a_row_that_cannot_be_read_is_named_as_such_not_as_configuration(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """A row edited behind bankgate's back into something its model refuses was reported as 'configuration: …',
    sending the operator to their settings."""
    demo.db.run(lambda conn: conn.execute(text("UPDATE accounts SET created_at = 'garbage' WHERE id = 'ACC-001'")))
    done = cli("admin", "accounts")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "bankgate-mcp: Account cannot be read: created_at: Input should be a valid datetime or date, input is too short"
    )


@pytest.mark.parametrize("kind", ["customer", "system"], ids=["account", "system-account"])
def test_a_deposit_to_a_balance_edited_into_text_names_the_row_and_changes_nothing(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]], kind: str
) -> None:
    """SQLite keeps text in a balance (PostgreSQL refuses it): a deposit credited it and debited its currency's
    system account, and ended in 'unexpected TypeError'; it names the row and column, and moves nothing."""
    edited = "ACC-001" if kind == "customer" else "SYS-EXTERNAL-USD"
    demo.db.run(
        lambda conn: conn.execute(text("UPDATE accounts SET balance_minor = 'x' WHERE id = :id"), {"id": edited})
    )
    before = snapshot(demo.db)
    done = cli("admin", "deposit", "ACC-001", "5.00")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"bankgate-mcp: accounts row id '{edited}': balance_minor holds 'x', not an integer\n"
    assert snapshot(demo.db) == before


def test_an_account_id_edited_out_of_the_numbering_does_not_stop_new_accounts(
    demo: Harness, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """`admin create` numbers a new account after the highest customer id: one edited into no number at all ('ACC-X',
    which no call can name) ended it in a bare "invalid literal for int()"; it is not numbered, so it is passed over."""
    demo.db.run(
        lambda conn: conn.execute(
            text(
                "INSERT INTO accounts (id, kind, owner, currency, status, balance_minor, created_at)"
                " VALUES ('ACC-X', 'customer', 'Eve', 'USD', 'open', 0, '2026-01-01T00:00:00.000000Z')"
            )
        )
    )
    assert cli("admin", "create", "Zed").stdout == "created ACC-004 for Zed (USD)\n"
    assert cli("admin", "create", "Yan", "--id", "ACC-010").stdout == "created ACC-010 for Yan (USD)\n"
