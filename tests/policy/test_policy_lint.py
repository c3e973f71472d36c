"""`policy check` warns of rules that load and run but cannot mean what their author meant, naming the
rule's place, what is wrong and what to write instead; the exit status stays 0. Each warning is held to
the behaviour it warns of, and no policy the project ships or shows draws one."""

from dataclasses import replace
from pathlib import Path

import pytest

from mcp_server.cli.admin import policy_check
from mcp_server.tools import TOOL_ARGUMENTS
from policy.cel_bounds import MAX_DEPTH
from policy.cel_syntax import MAX_HEIGHT
from policy.channel import Channel
from policy.facts import AccountFacts, CallFacts
from policy.loader import load_policy, parse_policy
from policy.outcome import Outcome
from tests.docs.markdown import ROOT
from tests.policy.test_cel_syntax import deep
from tests.server.cli_process import run_cli


def rule(when: str, outcome: str = "require_approval", default: str = "allow", tool: str = "transfer_funds") -> str:
    """A policy whose one rule, of `tool`, reads `when` (on line 12; its `outcome` on line 13)."""
    others = "".join(f'[tools.{name}]\ndefault = "allow"\n\n' for name in TOOL_ARGUMENTS if name != tool)
    when = when.replace('"', '\\"')
    return (
        f'{others}[tools.{tool}]\ndefault = "{default}"\n\n[[tools.{tool}.rules]]\nname = "mine"\n'
        f'when = "{when}"\noutcome = "{outcome}"\nreason = "r"\n'
    )


def checked(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> list[str]:
    """`bankgate-mcp policy check` on `text`: its exit status must stay 0; its warning lines."""
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    assert policy_check(path) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]


ACC = AccountFacts("ACC-001", "Alice", "open", "USD", 100_000, ("owner",))
BOB = AccountFacts("ACC-002", "Bob", "open", "USD", 0)


def transfer(memo: str | None = None, amount_minor: int = 1_000) -> CallFacts:
    arguments = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "10.00", "memo": memo}
    accounts = {"from_account": ACC, "to_account": BOB}
    return CallFacts("transfer_funds", arguments, "alice", amount_minor=amount_minor, accounts=accounts)


def close(sweep_to: AccountFacts | None) -> CallFacts:
    arguments = {"account_id": "ACC-001", "sweep_to": sweep_to and sweep_to.id}
    return CallFacts("close_account", arguments, "alice", accounts={"account": ACC, "sweep_to": sweep_to})


def test_an_unguarded_optional_argument_is_named_with_its_guard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Approval when the memo says rent" denies every call without a memo: warned, with the guard to write."""
    text = rule("args.memo.contains('rent')")
    [warning] = checked(tmp_path, capsys, text)
    assert warning.startswith(f"warning: {tmp_path / 'p.toml'}:12: tools.transfer_funds.rules[0].when: reads args.memo")
    assert "fix: guard it: has(args.memo) && ..." in warning
    policy = parse_policy(text, source="p", catalog=TOOL_ARGUMENTS)
    assert policy.decide(transfer(memo=None)).outcome is Outcome.DENY  # what the warning is about

    guarded = rule("has(args.memo) && args.memo.contains('rent')")
    assert checked(tmp_path, capsys, guarded) == []
    policy = parse_policy(guarded, source="p", catalog=TOOL_ARGUMENTS)
    assert policy.decide(transfer(memo=None)).outcome is Outcome.ALLOW
    assert policy.decide(transfer(memo="rent")).outcome is Outcome.REQUIRE_APPROVAL


@pytest.mark.parametrize(
    "when",
    [
        "args.memo == 'rent' && has(args.memo)",  # CEL's && absorbs the error whichever side it is on
        "!has(args.memo) || args.memo == 'rent'",
        "args.memo == 'rent' || !has(args.memo)",
        "has(args.memo) ? args.memo == 'rent' : false",
        "'memo' in args && args['memo'] == 'rent'",
        "!(!has(args.memo) || args.memo != 'rent')",
    ],
)
def test_every_guard_cel_honours_is_taken_as_one(when: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert checked(tmp_path, capsys, rule(when)) == []
    assert parse_policy(rule(when), source="p").decide(transfer(memo=None)).outcome is not Outcome.DENY


@pytest.mark.parametrize(
    "when",
    [
        "args.memo == 'rent' || amount_minor > minor(5)",  # fails only when the other side is false
        "has(args.memo) ? false : args.memo == 'rent'",  # guarded on the wrong branch
        "size(args['memo']) > 100",
    ],
)
def test_a_read_an_error_can_reach_is_not_taken_as_guarded(
    when: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [warning] = checked(tmp_path, capsys, rule(when))
    assert "reads args.memo" in warning
    assert parse_policy(rule(when), source="p").decide(transfer(memo=None, amount_minor=1)).outcome is Outcome.DENY


def test_an_account_a_call_may_not_name_is_named_with_its_null_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep_to` is null for a close without a sweep: reading it denies every such close."""
    text = rule("sweep_to.owner != account.owner", outcome="deny", default="require_approval", tool="close_account")
    [warning] = checked(tmp_path, capsys, text)
    assert (
        ":12: tools.close_account.rules[0].when: reads sweep_to, which is null when a call of close_account" in warning
    )
    assert "fix: guard it: sweep_to != null && ..." in warning
    assert parse_policy(text, source="p").decide(close(sweep_to=None)).outcome is Outcome.DENY

    guarded = "sweep_to != null && sweep_to.owner != account.owner"
    text = rule(guarded, outcome="deny", default="require_approval", tool="close_account")
    assert checked(tmp_path, capsys, text) == []
    policy = parse_policy(text, source="p")
    assert policy.decide(close(sweep_to=None)).outcome is Outcome.REQUIRE_APPROVAL
    assert policy.decide(close(sweep_to=BOB)).outcome is Outcome.DENY


@pytest.mark.parametrize(
    "when",
    ["sweep_to != null && args.sweep_to != args.account_id", "!(sweep_to == null || args.sweep_to == args.account_id)"],
)
def test_an_account_checked_for_null_guards_the_argument_naming_it(
    when: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep_to` is not null only when the call names a sweep_to account, so `args.sweep_to` is there too."""
    text = rule(when, outcome="deny", default="require_approval", tool="close_account")
    assert checked(tmp_path, capsys, text) == []
    policy = parse_policy(text, source="p")
    assert policy.decide(close(sweep_to=None)).outcome is Outcome.REQUIRE_APPROVAL
    assert policy.decide(close(sweep_to=BOB)).outcome is Outcome.DENY


def test_an_argument_the_tool_does_not_have_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt argument behind its own guard loads (the sample call never reads it) and never matches."""
    text = rule("has(args.memmo) && args.memmo == 'rent'")
    [warning] = checked(tmp_path, capsys, text)
    assert "args.memmo: transfer_funds has no argument memmo (its arguments: from_account, to_account" in warning
    assert parse_policy(text, source="p").decide(transfer(memo="rent")).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("when", "says", "call", "decided"),
    [
        (
            "amount_minor > 500.50",
            "amount_minor > 500.5: amount_minor is an integer count of minor units (cents), so 500.5 means 500.5 "
            "minor units, not 500.5 in the currency; fix: amount_minor > minor('500.5')",
            transfer(amount_minor=1_000),  # 10.00 needs approval: meant "above 500.50"
            Outcome.REQUIRE_APPROVAL,
        ),
        (
            "amount_minor == '500'",
            "is an integer, '500' is not a number, so this is never true; fix: amount_minor == minor('500')",
            transfer(amount_minor=50_000),
            Outcome.ALLOW,
        ),
        (
            "args.amount == '10'",
            "args.amount == '10': args.amount is the amount as text",
            transfer(),  # "10.00" is not "10"
            Outcome.ALLOW,
        ),
        (
            "args.amount > '9'",
            "compared letter by letter",
            transfer(),  # "10.00" < "9" as text
            Outcome.ALLOW,
        ),
        (
            "'Owner' in from_account.access",
            "'Owner' in from_account.access: never true, as from_account.access is only ever 'owner', 'viewer'",
            transfer(),
            Outcome.ALLOW,
        ),
        (
            "from_account.status == 'Open'",
            "never true, as from_account.status is only ever 'closed', 'open'",
            transfer(),
            Outcome.ALLOW,
        ),
        (
            "tool == 'close_account' && amount_minor > 0",
            "tool == 'close_account': never true, as tool is only ever 'transfer_funds'",
            transfer(),
            Outcome.ALLOW,
        ),
        (
            "currency in ['USD', 'eur']",
            "currency in [..., 'eur', ...]: never true, as currencies are ISO 4217 codes in capitals",
            transfer(),
            Outcome.REQUIRE_APPROVAL,
        ),
        (
            "principal != 1",
            "principal != 1: principal holds text, never an int, so this is always true",
            transfer(),
            Outcome.REQUIRE_APPROVAL,
        ),
        (
            "currency == b'USD'",
            "currency == b'USD': currency holds text, never bytes, so this is never true",
            transfer(),
            Outcome.ALLOW,
        ),
        (
            "principal == 'alice' && amount_minor < 'x'",  # the sample call, not alice's, would fail: it loads
            "amount_minor < 'x': amount_minor is an integer, 'x' is not a number, so this fails to evaluate, and so "
            "denies every call; fix: amount_minor < minor('x')",
            transfer(),
            Outcome.DENY,
        ),
        (
            "principal == 'alice' && principal < 1",
            "principal < 1: principal holds text, never an int, so this fails to evaluate, and so denies every call",
            transfer(),
            Outcome.DENY,
        ),
        (
            "amount_minor in [100, 1.5]",
            "amount_minor in [..., 1.5, ...]: amount_minor is an integer count of minor units (cents), so 1.5 means "
            "1.5 minor units, not 1.5 in the currency; fix: amount_minor in [..., minor('1.5'), ...]",
            transfer(amount_minor=150),  # 1.50 is not in the list: meant "100 cents or 1.50"
            Outcome.ALLOW,
        ),
        (
            "500.5 < amount_minor",
            "fix: minor('500.5') < amount_minor",
            transfer(amount_minor=1_000),
            Outcome.REQUIRE_APPROVAL,
        ),
        (
            "from_account.access == 'owner'",
            "from_account.access == 'owner': never true, as from_account.access is a list (e.g. ['owner']), never "
            "one text; fix: 'owner' in from_account.access",
            transfer(),  # alice owns ACC-001: meant to ask her
            Outcome.ALLOW,
        ),
        (
            "'operator' != roles",
            "'operator' != roles: always true, as roles is a list (e.g. ['operator']), never one text; "
            "fix: !('operator' in roles)",
            replace(transfer(), roles=("operator",)),  # meant: everyone but operators is asked
            Outcome.REQUIRE_APPROVAL,
        ),
        (
            "!('owner' in roles)",
            "'owner' in roles: never true, as roles is only ever 'operator'",
            transfer(),  # alice owns ACC-001, a relation to it (from_account.access), not a role: asked
            Outcome.REQUIRE_APPROVAL,
        ),
    ],
    ids=[
        "decimal",
        "string",
        "amount-text",
        "amount-order",
        "relation",
        "status",
        "tool",
        "currency",
        "type",
        "bytes",
        "string-ordered",
        "type-ordered",
        "fraction-in-a-list",
        "decimal-on-the-left",
        "list-equals-text",
        "list-differs-from-text",
        "relation-as-role",
    ],
)
def test_a_comparison_that_cannot_mean_what_it_says_is_named(
    when: str, says: str, call: CallFacts, decided: Outcome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [warning] = checked(tmp_path, capsys, rule(when))
    assert ":12: tools.transfer_funds.rules[0].when: " in warning and says in warning
    assert parse_policy(rule(when), source="p").decide(call).outcome is decided


def test_a_macro_variable_named_like_a_fact_is_not_taken_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In `roles.exists(tool, tool == 'treasury')`, `tool` is each role, not the tool's name: no "never true"."""
    text = rule("roles.exists(tool, tool == 'treasury')")
    assert checked(tmp_path, capsys, text) == []
    treasurer = CallFacts("transfer_funds", {}, "alice", roles=("treasury",))
    assert parse_policy(text, source="p").decide(treasurer).outcome is Outcome.REQUIRE_APPROVAL


def test_an_allow_rule_under_an_allow_default_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Most restrictive wins, so a first-listed allow rule makes no exception to a later deny rule."""
    text = rule("principal == 'ops'", outcome="allow") + (
        '\n[[tools.transfer_funds.rules]]\nname = "ceiling"\nwhen = "amount_minor > minor(100)"\n'
        'outcome = "deny"\nreason = "r"\n'
    )
    [warning] = checked(tmp_path, capsys, text)
    assert ":13: tools.transfer_funds.rules[0].outcome: never changes a decision" in warning
    assert "write the exception into the stricter rule's condition" in warning
    ops = CallFacts("transfer_funds", {}, "ops", amount_minor=100_000)
    assert parse_policy(text, source="p").decide(ops).outcome is Outcome.DENY
    assert checked(tmp_path, capsys, text.replace('default = "allow"\n\n[[', 'default = "deny"\n\n[[')) == []


@pytest.mark.parametrize(
    "name", ["parentheses", "lists", "ternaries", "negations", "minus signs", "a sum", "a conjunction"]
)
def test_a_condition_too_deep_for_the_linter_loads(name: str) -> None:
    """The linter decides nothing: a condition too deep or long for it to read, within what the engine is
    trusted with (`policy.cel_bounds`), loads without a warning."""
    assert MAX_HEIGHT < 300 < MAX_DEPTH
    policy = parse_policy(rule(deep(300)[name]), source="p", catalog=TOOL_ARGUMENTS)
    assert policy.warnings == ()
    assert policy.decide(transfer(amount_minor=1_000)).outcome is not Outcome.DENY


def test_a_raw_string_with_a_backslash_draws_no_warning_of_its_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`r'\\'` is one backslash: the rest is a string, not a comparison of amount_minor with a fraction."""
    when = "r'\\' != ' && amount_minor > 1.5 && ' // '"
    assert checked(tmp_path, capsys, rule(when.replace("\\", "\\\\"))) == []  # TOML escapes the backslash


def _policies() -> list[Path]:
    """Every policy file the project ships or shows: the default, and each TOML under tests/ and docs/."""
    found = [p for folder in ("tests", "docs") for p in (ROOT / folder).rglob("*.toml")]
    return [ROOT / "policy" / "default_policy.toml", *sorted(found)]


@pytest.mark.parametrize("path", _policies(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_policy_the_project_ships_or_shows_draws_a_warning(path: Path) -> None:
    assert load_policy(path, catalog=TOOL_ARGUMENTS).warnings == ()


@pytest.mark.parametrize("when", ["amount_minor > minor('500.50')", "moved_today_minor + amount_minor > minor('0.5')"])
def test_a_rule_no_call_in_a_currency_without_decimals_can_evaluate_is_named(
    when: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`minor('500.50')` (the fraction warning's own fix) is finer than a yen: every call in JPY, KRW, ISK or CLP
    fails to evaluate the rule and is denied, a 5-yen transfer included, while USD calls work."""
    [warning] = checked(tmp_path, capsys, rule(when))
    assert ":12: tools.transfer_funds.rules[0].when: " in warning and "JPY" in warning and "denied" in warning
    assert "currency == 'USD' && ..." in warning
    yen = replace(transfer(amount_minor=5), currency="JPY", minor_exponent=0)
    decision = parse_policy(rule(when), source="p").decide(yen)
    assert decision.outcome is Outcome.DENY and decision.failure is not None


@pytest.mark.parametrize(
    "when",
    ["amount_minor > minor(500)", "currency == 'USD' && amount_minor > minor('500.50')", "currency != 'JPY' || false"],
)
def test_a_rule_every_currency_can_evaluate_draws_no_currency_warning(
    when: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert checked(tmp_path, capsys, rule(when)) == []


def test_a_condition_that_fails_on_the_sample_call_is_reported_once(tmp_path: Path) -> None:
    """The CEL engine logs a WARNING of its own when a function it calls fails, which `policy check` printed
    (through logging's last resort) as a stray line before its own error naming the rule."""
    (tmp_path / "p.toml").write_text(rule("amount_minor > minor('0.001')"), encoding="utf-8")
    checked = run_cli(tmp_path, "policy", "check", "p.toml")
    assert checked.returncode == 2
    [error] = checked.stderr.splitlines()
    assert error.startswith("bankgate-mcp: p.toml:") and "finer than the currency's minor unit" in error


def test_policy_check_shows_a_conditions_control_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CEL string may hold an escape (`'\\u001b[2K'` in TOML): `policy check` lists the visibility condition and
    quotes conditions in its warnings, which must not erase the line they are on and print another."""
    visible = "[accounts]\nvisible = \"principal != '\\u001b[2K' || size(account.access) > 0\"\n"
    (tmp_path / "p.toml").write_text(visible + rule("tool == 'tr\\u001b[2Kansfer'"), encoding="utf-8")
    assert policy_check(tmp_path / "p.toml") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "only where principal != '\\x1b[2K' ||" in out and "tool == 'tr\\x1b[2Kansfer'" in out


@pytest.mark.parametrize(
    ("visible", "says", "bob_sees_alices"),
    [
        (
            "tool != 'get_acount_balance' || size(account.access) > 0",
            "tool != 'get_acount_balance': always true, as tool is only ever 'close_account', 'get_account_balance', "
            "'transfer_funds'",
            True,  # meant: a balance is read only by whoever holds the account
        ),
        (
            "'Owner' in account.access || 'operator' in roles",
            "'Owner' in account.access: never true, as account.access is only ever 'owner', 'viewer'",
            False,
        ),
    ],
    ids=["tool", "relation"],
)
def test_a_visibility_comparison_that_cannot_mean_what_it_says_is_named(
    visible: str, says: str, bob_sees_alices: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[accounts] visible` is a condition like a rule's, and its typos as silent: one that widens who may learn of
    an account drew no warning where the same comparison in a rule does."""
    text = f'[accounts]\nvisible = "{visible}"\n\n' + rule("amount_minor > minor(1)")
    [warning] = checked(tmp_path, capsys, text)
    assert ":2: accounts.visible: " in warning and says in warning
    bob = CallFacts(
        "get_account_balance", {"account_id": "ACC-001"}, "bob", accounts={"account": replace(ACC, access=())}
    )
    assert parse_policy(text, source="p").sees(bob) is bob_sees_alices


def test_a_visibility_condition_naming_a_tool_draws_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unlike a rule's, it judges calls of every tool: naming one is no constant."""
    text = "[accounts]\nvisible = \"tool == 'transfer_funds' || size(account.access) > 0\"\n\n" + rule("true")
    assert checked(tmp_path, capsys, text) == []


@pytest.mark.parametrize("loosened", ["form", "any"])
def test_a_rule_dropping_its_tools_desk_channel_is_named(
    loosened: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule's channel replaces its tool's for the calls it matches: under a `desk` tool, a `form` or `any` one
    lets them be approved in a form nobody signs. Legal (it may be meant), so a warning, not an error."""
    text = rule("amount_minor < minor(100)", default="require_approval").replace(
        'default = "require_approval"\n', 'default = "require_approval"\nchannel = "desk"\n'
    )
    assert checked(tmp_path, capsys, text) == []  # the rule keeps the tool's desk
    loose = text + f'channel = "{loosened}"\n'
    [warning] = checked(tmp_path, capsys, loose)
    assert f":16: tools.transfer_funds.rules[0].channel: channel '{loosened}' replaces the tool's 'desk'" in warning
    small = CallFacts("transfer_funds", {}, "alice", amount_minor=1_000)
    assert parse_policy(loose, source="p").decide(small).channel is Channel(loosened)  # what the warning says
    assert checked(tmp_path, capsys, loose.replace('channel = "desk"\n', "")) == []  # no desk to drop
