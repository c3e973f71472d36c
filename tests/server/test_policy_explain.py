"""`policy explain` explains the policy: its decision and the ledger's pre-checks are separate
findings, and hypothetical facts stand in for a funded account."""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import inspect

from mcp_server.cli.main import main
from mcp_server.storage import migrations
from mcp_server.storage.database import Database
from mcp_server.storage.migrations import Migration
from tests.support import TEST_POLICY, postgres_schema

RESERVE_POLICY = """
[tools.transfer_funds]
default = "require_approval"

[[tools.transfer_funds.rules]]
name = "keep-a-reserve"
when = "from_account.balance_minor - amount_minor < minor(1000)"
outcome = "deny"
reason = "A transfer must leave 1,000.00 in the account."
"""

MEMO_POLICY = """
[tools.transfer_funds]
default = "require_approval"

[[tools.transfer_funds.rules]]
name = "no-invoices"
when = "args.memo.startsWith('INV-')"
outcome = "deny"
reason = "Invoices are paid by the accounts desk."
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    with ExitStack() as stack:
        sqlite = f"sqlite:///{tmp_path / 'ledger.db'}"
        url = sqlite if request.param == "sqlite" else stack.enter_context(postgres_schema("explain"))
        assert main(["admin", "init", "--db", url, "--seed-demo"]) == 0
        capsys.readouterr()
        yield url


def explain(capsys: pytest.CaptureFixture[str], db: str, amount: str, *extra: str) -> str:
    args = f'{{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "{amount}"}}'
    assert main(["policy", "explain", "transfer_funds", "--args", args, "--db", db, *extra]) == 0
    return capsys.readouterr().out


def test_the_policy_deny_shows_beside_a_failing_precheck(demo: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, demo, "70000")  # ACC-001 holds 5,000.00
    assert "policy decision: deny" in out and "above-ceiling" in out
    assert "ledger pre-checks: would refuse (insufficient_funds)" in out


@pytest.mark.parametrize("principal", ["alice", "local"])  # ACC-001's owner; an operator
def test_a_failing_precheck_keeps_the_callers_entitlements(
    demo: str, capsys: pytest.CaptureFixture[str], principal: str
) -> None:
    out = explain(capsys, demo, "6000", "--principal", principal, "--balance", "ACC-001=100000")
    assert "would refuse (insufficient_funds)" in out
    assert "policy decision: require_approval" in out and "not-entitled" not in out


def test_a_rule_that_cannot_be_evaluated_says_why(
    demo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "memo.toml"
    policy.write_text(MEMO_POLICY)
    out = explain(capsys, demo, "700", "--policy", str(policy))
    assert "policy decision: deny" in out and "Rule 'no-invoices' could not be evaluated" in out
    assert "  could not evaluate: \"args.memo.startsWith('INV-')\" failed: 'memo'" in out


def test_a_passing_precheck_shows_the_effect(demo: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = explain(capsys, demo, "700")
    assert "policy decision: require_approval" in out
    assert "ledger pre-checks: pass" in out and "$5,000.00 now, $4,300.00 after" in out


def test_a_hypothetical_balance_changes_the_policy_finding_only(
    demo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "reserve.toml"
    policy.write_text(RESERVE_POLICY)
    real = explain(capsys, demo, "700", "--policy", str(policy))
    assert "policy decision: require_approval" in real
    pretend = explain(capsys, demo, "700", "--policy", str(policy), "--balance", "ACC-001=1500")
    assert "policy decision: deny" in pretend and "keep-a-reserve" in pretend
    assert "hypothetical facts: balance ACC-001=1500" in pretend
    assert "ledger pre-checks: pass" in pretend  # judged on the real balance
    assert main(["admin", "accounts", "--db", demo]) == 0
    assert "$5,000.00" in capsys.readouterr().out  # nothing was written


@pytest.mark.parametrize("sweep", [', "sweep_to": "ACC-002"', ""], ids=["swept", "refused-without-sweep_to"])
def test_a_hypothetical_balance_is_what_a_close_sweeps(
    demo: str, capsys: pytest.CaptureFixture[str], sweep: str
) -> None:
    args = f'{{"account_id": "ACC-001"{sweep}}}'
    command = ["policy", "explain", "close_account", "--args", args, "--db", demo, "--principal", "alice"]
    assert main([*command, "--balance", "ACC-001=70000"]) == 0
    out = capsys.readouterr().out
    assert "policy decision: deny" in out and "matched rules: above-ceiling" in out


def test_a_hypothetical_daily_total(demo: str, capsys: pytest.CaptureFixture[str]) -> None:
    policy = ["--policy", str(TEST_POLICY), "--principal", "capped"]
    assert "policy decision: allow" in explain(capsys, demo, "1.00", *policy)
    out = explain(capsys, demo, "1.00", *policy, "--moved-today", "99.50")
    assert "policy decision: deny" in out and "daily-cap" in out


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--balance", "ACC-003=10"], "ACC-003, which this call does not involve"),
        (["--balance", "ACC-001"], "expects ACCOUNT=AMOUNT"),
        (["--balance", "ACC-001=lots"], "not a number"),
        (["--moved-today", "-5"], "zero or more"),
        # Written as no amount may be (`money.parse_amount`): once read as 1e3, 100 or 1000, or not read at all
        # (an unexpected InvalidOperation or Overflow, a CEL conversion error).
        (["--moved-today", "1e3"], "plain decimal"),
        (["--moved-today", "\u0661\u0660\u0660"], "plain decimal"),
        (["--moved-today", "1_000"], "plain decimal"),
        (["--moved-today", "+5"], "plain decimal"),
        (["--moved-today", "sNaN"], "plain decimal"),
        (["--balance", "ACC-001=1e999999999"], "plain decimal"),
        (["--moved-today", "9" * 23], "at most $90,071,992,547,409.91"),
    ],
)
def test_bad_hypotheses_are_refused(demo: str, capsys: pytest.CaptureFixture[str], extra: list[str], says: str) -> None:
    args = '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1"}'
    assert main(["policy", "explain", "transfer_funds", "--args", args, "--db", demo, *extra]) == 2
    assert says in capsys.readouterr().err


def test_an_unknown_account_is_a_precheck_finding(demo: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = '{"from_account": "ACC-999", "to_account": "ACC-002", "amount": "1"}'
    assert main(["policy", "explain", "transfer_funds", "--args", args, "--db", demo]) == 0
    out = capsys.readouterr().out
    assert "policy decision: not judged" in out and "would refuse (unknown_account)" in out


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("transfer_funds", '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "70"}'),
        # Finer than the hidden account's currency: the server answers "does not exist" before reading the amount.
        ("transfer_funds", '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1.005"}'),
        ("close_account", '{"account_id": "ACC-001"}'),
        ("get_account_balance", '{"account_id": "ACC-001"}'),
    ],
)
def test_an_account_hidden_from_the_caller_is_judged_by_no_rule(
    demo: str, capsys: pytest.CaptureFixture[str], tool: str, args: str
) -> None:
    """The shipped policy's `[accounts] visible` hides alice's ACC-001 from bob: the server answers "does not
    exist" before any rule runs. `explain` printed the rules' decision (deny, not-entitled) as the policy's."""
    assert main(["policy", "explain", tool, "--args", args, "--db", demo, "--principal", "bob"]) == 0
    out = capsys.readouterr().out
    assert "policy decision: hidden: [accounts] visible hides ACC-001 from bob" in out
    assert "matched rules" not in out and "would refuse (unknown_account)" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["transfer\x1b[2K\r", "--args", "{}"], "no tool named 'transfer\\x1b[2K\\r'"),
        (
            ["transfer_funds", "--args", '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1"}',
             "--balance", "ACC-009\x1b[2K=5"],
            "--balance names ACC-009\\x1b[2K, which",
        ),
    ],
    ids=["tool", "balance"],
)  # fmt: skip
def test_an_error_echoing_the_command_line_shows_its_control_characters_escaped(
    demo: str, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """The one line naming what is wrong quotes what was typed (or pasted, or passed on by a script): an escape in it
    must be shown, not sent to the terminal, which could erase the line and print another in its place."""
    assert main(["policy", "explain", *args, "--db", demo]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    assert says in err


def test_it_needs_no_signing_key_and_makes_none(demo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`explain` only reads, as `admin accounts` does: an author judging a policy against a ledger needs none of
    the key its servers sign audit records with. It required that key, and where the key file named none it
    wrote a new signing key there before refusing."""
    missing = tmp_path / "no-such.key"
    out = explain(capsys, demo, "700", "--audit-key-file", str(missing))
    assert "policy decision: require_approval" in out and "ledger pre-checks: pass" in out
    assert not missing.exists()


def test_it_migrates_nothing(demo: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a ledger behind this release it is refused, naming the migration, and the ledger stays behind: an
    author's newer command must not move a ledger past the release its servers run."""
    future = Migration(99, "future_table", "CREATE TABLE future_table (x INTEGER)")
    shipped = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, future])
    args = '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1"}'
    assert main(["policy", "explain", "transfer_funds", "--args", args, "--db", demo]) == 2
    assert "migration 0099_future_table is not applied" in capsys.readouterr().err
    monkeypatch.undo()
    assert "future_table" not in Database.open(demo, create=False, migrate=False).read(
        lambda conn: inspect(conn).get_table_names()
    )


def test_an_amount_its_currency_cannot_hold_leaves_the_policy_unjudged_beside_the_refusal(
    demo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """0.5 from a JPY account to a USD one: the server refuses the currencies (read before the amount) and no rule
    judges the call. `explain` stopped at the amount instead, exit 2, with no finding and another refusal."""
    assert main(["admin", "create", "--db", demo, "--currency", "JPY", "Yen Co"]) == 0  # ACC-004
    capsys.readouterr()
    args = '{"from_account": "ACC-004", "to_account": "ACC-001", "amount": "0.5"}'
    assert main(["policy", "explain", "transfer_funds", "--args", args, "--db", demo]) == 0
    out = capsys.readouterr().out
    assert "policy decision: not judged (0.5 is no amount in JPY: JPY amounts have no decimal places)" in out
    assert "ledger pre-checks: would refuse (currency_mismatch)" in out


def test_a_role_the_callers_token_carries_is_judged_as_the_server_judges_it(
    demo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JWT whose scope carries `operator` (BANKGATE_OAUTH_ROLE_SCOPES) makes alice an operator for that call: the
    shipped policy shows her bob's account and asks about the transfer. `explain` judged her by her grants alone,
    "hidden", with no way to say what her token carries."""
    args = '{"from_account": "ACC-002", "to_account": "ACC-001", "amount": "10"}'
    alice = ["policy", "explain", "transfer_funds", "--args", args, "--db", demo, "--principal", "alice"]
    assert main(alice) == 0
    assert "policy decision: hidden" in capsys.readouterr().out
    assert main([*alice, "--role", "operator"]) == 0
    out = capsys.readouterr().out
    assert "policy decision: require_approval" in out and "ledger pre-checks: pass" in out
    assert main([*alice, "--role", "root"]) == 2
    assert "--role: unknown role 'root'; the roles are operator" in capsys.readouterr().err
