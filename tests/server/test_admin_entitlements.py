"""`bankgate-mcp admin grant|revoke|grants|roles`: as a shell user runs them, exit codes and all."""

import subprocess
import sys
from pathlib import Path

import pytest

from mcp_server.ledger.entitlements import grants
from tests.server.harness import Harness


@pytest.fixture
def demo(tmp_path: Path) -> Harness:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")
    harness.ledger.seed_demo()
    return harness


def admin(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mcp_server", "admin", *args, "--db", harness.db_url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def standing(harness: Harness) -> list[tuple[str, str | None, str]]:
    return [(g.principal, g.account_id, g.name) for g in grants(harness.db)]


def test_admin_grants_revokes_and_lists_entitlements_and_audits_each_change(demo: Harness) -> None:
    assert admin(demo, "grant", "dave", "viewer", "ACC-002", "--by", "ops").stdout == (
        "granted: dave is viewer of ACC-002\n"
    )
    assert admin(demo, "roles", "grant", "erin", "operator", "--by", "ops").returncode == 0
    assert admin(demo, "revoke", "bob", "owner", "ACC-002", "--by", "ops").stdout == (
        "revoked: bob is no longer owner of ACC-002\n"
    )
    again = admin(demo, "grant", "dave", "viewer", "ACC-002")
    assert (again.returncode, again.stdout) == (0, "unchanged: dave already is viewer of ACC-002\n")

    by_account = admin(demo, "grants", "--account", "ACC-002").stdout.splitlines()
    assert [line.split()[:3] for line in by_account] == [
        ["dave", "viewer", "on"],
        ["erin", "operator", "role"],  # an operator acts on every account, so it bears on this one
        ["local", "operator", "role"],
    ]
    assert "granted by admin:ops" in by_account[0]
    by_principal = admin(demo, "grants", "--principal", "alice").stdout.splitlines()
    assert [line.split()[:4] for line in by_principal] == [["alice", "owner", "on", "ACC-001"]]

    changes = [(r["event"], r["principal"], r["arguments"]) for r in demo.audit(tool="entitlements")]
    assert changes == [
        ("granted", "admin:ops", {"principal": "dave", "relation": "viewer", "account_id": "ACC-002"}),
        ("granted", "admin:ops", {"principal": "erin", "role": "operator"}),
        ("revoked", "admin:ops", {"principal": "bob", "relation": "owner", "account_id": "ACC-002"}),
    ]  # the unchanged second grant is not a change, so it is not recorded
    assert admin(demo, "roles", "revoke", "erin", "operator").returncode == 0
    assert ("erin", None, "operator") not in standing(demo)
    command = [sys.executable, "-m", "mcp_server", "audit", "verify", "--db", demo.db_url]
    verified = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert verified.stdout == "audit chain intact: 7 records\n"  # the seed's 3 fundings and 4 changes


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("grant", "dave", "owner", "ACC-999"), "refused (unknown_account): Account ACC-999 does not exist."),
        (("grant", "dave", "admin", "ACC-001"), "refused (invalid_relation): relation must be one of: owner, viewer."),
        (("grant", "dave", "owner", "acc-1"), "refused (invalid_account_id): account_id must use upper-case"),
        (("grant", "da ve", "owner", "ACC-001"), "refused (invalid_principal): principal must be 1 to 100 visible"),
        (("roles", "grant", "dave", "root"), "refused (invalid_role): role must be one of: operator."),
        (("revoke", "carol", "owner", "ACC-001"), "refused (not_granted): carol is not owner of ACC-001;"),
        (("roles", "revoke", "alice", "operator"), "refused (not_granted): alice does not have the role operator;"),
        (("grants", "--account", "ACC-999"), "refused (unknown_account): Account ACC-999 does not exist."),
    ],
    ids=["unknown-account", "relation", "account-id", "principal", "role", "revoke-nothing", "role-nothing", "list"],
)
def test_bad_admin_input_is_one_clear_line_exit_2_and_changes_nothing(
    demo: Harness, args: tuple[str, ...], says: str
) -> None:
    before, audited = standing(demo), demo.audit()
    result = admin(demo, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("bankgate-mcp: " + says)
    assert standing(demo) == before and demo.audit() == audited
