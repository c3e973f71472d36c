"""Policy files: validation with locations, decisions, versions, fail-closed evaluation."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.tools import TOOL_ARGUMENTS
from policy.facts import AccountFacts, CallFacts
from policy.loader import PolicyError, load_policy, parse_policy
from policy.outcome import Outcome

GOOD = """
[tools.transfer_funds]
default = "allow"

[[tools.transfer_funds.rules]]
name = "needs-approval"
when = "amount_minor > minor(1000)"
outcome = "require_approval"
reason = "Above 1,000 needs approval."

[[tools.transfer_funds.rules]]
name = "ceiling"
when = "amount_minor > minor(10000)"
outcome = "deny"
reason = "Above 10,000 is refused."

[[tools.transfer_funds.rules]]
name = "daily"
when = "moved_today_minor + amount_minor > minor(20000)"
outcome = "deny"
reason = "At most 20,000 a day."
"""


def call(amount_minor: int, moved: int = 0, tool: str = "transfer_funds") -> CallFacts:
    return CallFacts(tool, {"amount": "x"}, "alice", amount_minor=amount_minor, moved_today_minor=moved)


@pytest.mark.parametrize(
    ("amount", "moved", "outcome", "rules"),
    [
        (100_000, 0, Outcome.ALLOW, ()),
        (100_001, 0, Outcome.REQUIRE_APPROVAL, ("needs-approval",)),
        (1_000_001, 0, Outcome.DENY, ("needs-approval", "ceiling")),
        (500_000, 1_600_000, Outcome.DENY, ("needs-approval", "daily")),
    ],
)
def test_most_restrictive_matching_rule_wins(amount: int, moved: int, outcome: Outcome, rules: tuple[str, ...]) -> None:
    decision = parse_policy(GOOD, source="p.toml").decide(call(amount, moved))
    assert decision.outcome is outcome and decision.matched_rules == rules


def test_unnamed_tools_and_evaluation_errors_are_denied() -> None:
    policy = parse_policy(
        GOOD + '\n[tools.close_account]\ndefault = "allow"\n[[tools.close_account.rules]]\nname = "bad"\n'
        'when = "account.balance_minor > 0"\noutcome = "allow"\nreason = "r"\n',
        source="p.toml",
    )
    assert policy.decide(call(1, tool="get_account_balance")).outcome is Outcome.DENY
    broken = policy.decide(CallFacts("close_account", {}, "alice"))  # account is null: the rule cannot run
    assert broken.outcome is Outcome.DENY and broken.matched_rules == ("bad",)
    fine = policy.decide(
        CallFacts("close_account", {}, "alice", accounts={"account": AccountFacts("ACC-1", "A", "open", "USD", 5)})
    )
    assert fine.outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("tool", "when", "arguments", "amount_minor"),
    [
        ("transfer_funds", "amount_minor * 1000000 < minor(1000000000)", {}, 10**15),  # int64 overflow
        ("transfer_funds", "from_account.balance_minor / (amount_minor - 5) >= 0", {}, 5),  # division by zero
        ("transfer_funds", "principal == 'sample' || int(args.amount) < 5", {"amount": "1.00"}, 100),  # no int
        ("transfer_funds", "principal == 'sample' || now < timestamp(args.memo)", {"memo": "next week"}, 100),
        ("close_account", "sweep_to.owner != 'Mallory'", {}, 100),  # no sweep_to: a null account
    ],
    ids=["overflow", "division-by-zero", "text-as-int", "text-as-timestamp", "null-account"],
)
def test_an_allow_rule_that_fails_for_one_call_denies_it(
    tool: str, when: str, arguments: dict[str, str], amount_minor: int
) -> None:
    """Rules that evaluate on `policy check`'s sample call but fail on some call (a larger amount, another memo,
    no sweep): the call is denied, never allowed by the failing rule nor asked about under the default."""
    text = (
        f'[tools.{tool}]\ndefault = "require_approval"\n[[tools.{tool}.rules]]\nname = "trusted"\n'
        f'when = "{when}"\noutcome = "allow"\nreason = "r"\n'
    )
    policy = parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    account = AccountFacts("ACC-001", "Alice", "open", "USD", 100_000, ("owner",))
    accounts = {"from_account": account, "to_account": account, "account": account, "sweep_to": None}
    decision = policy.decide(CallFacts(tool, arguments, "alice", amount_minor=amount_minor, accounts=accounts))
    assert (decision.outcome, decision.matched_rules) == (Outcome.DENY, ("trusted",))
    assert decision.failure is not None and "failed" in decision.failure


def test_version_is_a_content_hash() -> None:
    one = parse_policy(GOOD, source="a")
    assert one.version == parse_policy("# a comment\n" + GOOD.replace("\n\n", "\n"), source="b").version
    assert one.version != parse_policy(GOOD.replace("minor(1000)", "minor(999)"), source="c").version


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("[tools.transfer_funds]\ndefault = 'maybe'\n", "p.toml:2: tools.transfer_funds.default", "must be one of"),
        ("[tools.transfer_funds\n", "p.toml: (syntax)", "line 1"),
        ("[tools.wire_money]\ndefault = 'allow'\n", "tools.wire_money", "no such tool"),
        (
            "[tools.close_account]\ndefault = 'allow'\nconfirm = 'pin'\n",
            "p.toml:3: tools.close_account.confirm",
            "argument",
        ),
        (
            "[tools.transfer_funds]\ndefault = 'allow'\n[[tools.transfer_funds.rules]]\nname = 'x'\n"
            "when = 'amount_minor >'\noutcome = 'deny'\nreason = 'r'\n",
            "p.toml:5: tools.transfer_funds.rules[0].when",
            "Syntax error",
        ),
        (
            "[tools.transfer_funds]\ndefault = 'allow'\n[[tools.transfer_funds.rules]]\nname = 'x'\n"
            "when = 'balance > 5'\noutcome = 'deny'\nreason = 'r'\n",
            "rules[0].when",
            "unknown variable balance",
        ),
        (
            "[tools.transfer_funds]\ndefault = 'allow'\n[[tools.transfer_funds.rules]]\nname = 'x'\n"
            "when = 'args.amount > 5'\noutcome = 'deny'\nreason = 'r'\n",
            "rules[0].when",
            "failed",
        ),
        (
            "[tools.close_account]\ndefault = 'allow'\n[[tools.close_account.rules]]\nname = 'x'\n"
            "when = \"to_account.owner == 'Bob'\"\noutcome = 'deny'\nreason = 'r'\n",
            "p.toml:5: tools.close_account.rules[0].when",
            "reads to_account, which a call of close_account never has (it has: account, sweep_to)",
        ),
        (
            "[tools.get_account_balance]\ndefault = 'allow'\n[[tools.get_account_balance.rules]]\nname = 'x'\n"
            "when = \"'owner' in from_account.access\"\noutcome = 'allow'\nreason = 'r'\n",
            "p.toml:5: tools.get_account_balance.rules[0].when",
            "reads from_account, which a call of get_account_balance never has (it has: account)",
        ),
        (
            "[tools.close_account]\ndefault = 'allow'\nconfirm = 'account_id'\n",  # read as: closes are typed back
            "p.toml:3: tools.close_account.confirm",
            "applies only to a tool whose default or a rule is require_approval (nothing is ever typed back here)",
        ),
        ("[tools.transfer_funds]\ndefault = 'allow'\nextra = 1\n", "tools.transfer_funds.extra", "unknown key"),
        (
            "[accounts]\nvisible = 'amount_minor > 0'\n[tools.transfer_funds]\ndefault = 'allow'\n",
            "p.toml:2: accounts.visible",
            "unknown variable amount_minor",
        ),
        (
            # Evaluated for the account a transfer debits too, whose call has no account_id: fails, so hides it.
            "[accounts]\nvisible = \"args.account_id != '' && size(account.access) > 0\"\n"
            "[tools.transfer_funds]\ndefault = 'allow'\n",
            "p.toml:2: accounts.visible",
            "fails to evaluate for a call of transfer_funds",
        ),
        ("[accounts]\nseen = 'true'\n[tools.transfer_funds]\ndefault = 'allow'\n", "accounts.seen", "unknown key"),
        (
            "[policy.accounts]\nvisible = 'false'\n[tools.transfer_funds]\ndefault = 'allow'\n",
            "policy.accounts",
            "unknown key (expected: name)",
        ),
        ("[policy]\nname = 1\n[tools.transfer_funds]\ndefault = 'allow'\n", "p.toml:2: policy.name", "string"),
        ("policy = 'strict'\n[tools.transfer_funds]\ndefault = 'allow'\n", "policy: must be a table", ""),
    ],
    ids=[
        "outcome",
        "syntax",
        "unknown-tool",
        "confirm",
        "cel-syntax",
        "cel-variable",
        "cel-type",
        "account-the-tool-lacks",
        "account-the-read-lacks",
        "confirm-never-asked",
        "unknown-key",
        "visible-variable",
        "visible-fails-for-a-tool",
        "accounts-key",
        "policy-key",
        "policy-name",
        "policy-table",
    ],
)
def test_errors_say_where_and_what(text: str, where: str, says: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert where in str(error.value) and says in str(error.value)


RULE = "[tools.transfer_funds]\ndefault = 'allow'\n[[tools.transfer_funds.rules]]\nwhen = 'amount_minor > 5'\n"


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (
            RULE + 'name = "x"\noutcome = "deny"\nreason = "Too much.\\nRequested by: alice"\n',
            "p.toml:7: tools.transfer_funds.rules[0].reason",
            "U+000A",
        ),
        (RULE + 'name = "ok\\r-> deny"\noutcome = "allow"\nreason = "r"\n', "rules[0].name", "U+000D"),
        (
            RULE + 'name = "x"\noutcome = "deny"\nreason = "r"\nmessages = { denied = "No\\u001b[8m." }\n',
            "tools.transfer_funds.rules[0].messages.denied",
            "U+001B",
        ),
        (
            "[tools.transfer_funds]\ndefault = 'allow'\nreason = 'ok\u202egnorw'\n",
            "tools.transfer_funds.reason",
            "U+202E",
        ),
        ("[policy]\nname = 'bank\t'\n[tools.transfer_funds]\ndefault = 'allow'\n", "p.toml:2: policy.name", "U+0009"),
    ],
    ids=["reason-line-break", "name-carriage-return", "message-escape", "reason-bidi-override", "policy-name-tab"],
)
def test_text_shown_to_people_is_one_line_of_visible_characters(text: str, where: str, says: str) -> None:
    """Reasons are lines of the question an approver reads (a line break in one could add a "Requested by:" line),
    names and reasons lines of `policy check` and `policy explain`: a control or formatting character, which a
    terminal or a form would act on rather than show, is refused naming the key and the character."""
    with pytest.raises(PolicyError) as error:
        parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert where in str(error.value) and says in str(error.value)


def test_text_shown_to_people_may_use_any_space() -> None:
    reason = "Au-delà de 1\u202f000\u00a0€, il faut une approbation."  # French: narrow and no-break spaces
    text = f"[tools.transfer_funds]\ndefault = 'require_approval'\nreason = '{reason}'\n"
    assert parse_policy(text, source="p.toml").tools["transfer_funds"].reason == reason


def entitled(
    tool: str, access: tuple[str, ...] = ("owner",), roles: tuple[str, ...] = (), amount_minor: int = 1
) -> CallFacts:
    """A call whose account (read, debited or closed) the caller holds `access` to, with `roles`."""
    account = AccountFacts("ACC-001", "Alice", "open", "USD", 10_000_000_00, access)
    payee = AccountFacts("ACC-002", "Bob", "open", "USD", 0)
    role = "from_account" if tool == "transfer_funds" else "account"
    accounts = {role: account, "to_account": payee, "sweep_to": payee}
    return CallFacts(tool, {"amount": "x"}, "alice", roles, amount_minor=amount_minor, accounts=accounts)


def test_shipped_policy() -> None:
    policy = load_policy(catalog=TOOL_ARGUMENTS)
    assert policy.decide(entitled("get_account_balance")).outcome is Outcome.ALLOW
    assert policy.decide(entitled("transfer_funds", amount_minor=5_000_000)).outcome is Outcome.REQUIRE_APPROVAL
    assert policy.decide(entitled("transfer_funds", amount_minor=5_000_001)).outcome is Outcome.DENY
    assert policy.tools["close_account"].confirm == "account_id"


def test_the_shipped_policy_caps_a_sweep_like_a_transfer() -> None:
    """Once a close swept any balance, above the ceiling that holds for transfers."""
    policy = load_policy(catalog=TOOL_ARGUMENTS)
    for amount, outcome in ((5_000_000, Outcome.REQUIRE_APPROVAL), (5_000_001, Outcome.DENY)):
        assert policy.decide(entitled("transfer_funds", amount_minor=amount)).outcome is outcome
        assert policy.decide(entitled("close_account", amount_minor=amount)).outcome is outcome


@pytest.mark.parametrize(
    ("access", "roles", "reads", "debits"),
    [
        (("owner",), (), Outcome.ALLOW, Outcome.REQUIRE_APPROVAL),
        (("viewer",), (), Outcome.ALLOW, Outcome.DENY),
        ((), ("operator",), Outcome.ALLOW, Outcome.REQUIRE_APPROVAL),
        ((), (), Outcome.DENY, Outcome.DENY),
    ],
    ids=["owner", "viewer", "operator", "nobody"],
)
def test_the_shipped_policy_lets_only_entitled_principals_read_and_debit(
    access: tuple[str, ...], roles: tuple[str, ...], reads: Outcome, debits: Outcome
) -> None:
    policy = load_policy(catalog=TOOL_ARGUMENTS)
    assert policy.decide(entitled("get_account_balance", access, roles)).outcome is reads
    for tool in ("transfer_funds", "close_account"):
        decision = policy.decide(entitled(tool, access, roles))
        assert decision.outcome is debits
        assert ("not-entitled" in decision.matched_rules) is (debits is Outcome.DENY)


def test_the_shipped_policy_hides_accounts_from_principals_with_no_entitlement() -> None:
    policy = load_policy(catalog=TOOL_ARGUMENTS)
    assert policy.sees(entitled("get_account_balance", ("viewer",)))
    assert policy.sees(entitled("get_account_balance", (), ("operator",)))
    assert not policy.sees(entitled("get_account_balance", ()))
    assert parse_policy(GOOD, source="p.toml").sees(entitled("get_account_balance", ()))  # no [accounts]: all seen


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "nope.toml")


@pytest.mark.parametrize(("mode", "who"), [(0o664, "its group"), (0o646, "others"), (0o666, "its group")])
def test_a_policy_file_others_may_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    """Whoever may write the policy decides what runs without a human (from the next start): refused, as a token or
    public-key file others may write is. Read-only to them is fine: a policy is no secret."""
    path = tmp_path / "open.toml"
    path.write_text(GOOD, encoding="utf-8")
    path.chmod(mode)
    with pytest.raises(PolicyError, match=rf"\(file\): {who} may write it \(mode {oct(mode)}\).*chmod 644 {path}$"):
        load_policy(path)
    path.chmod(0o644)
    assert load_policy(path).version == parse_policy(GOOD, source="p.toml").version


def test_a_policy_saved_with_a_byte_order_mark_loads_as_without_one(tmp_path: Path) -> None:
    """Notepad's "UTF-8 with BOM" and Windows PowerShell 5's `Out-File -Encoding utf8` begin the file with U+FEFF:
    UTF-8 text still, which was refused as `(syntax): Invalid statement (at line 1, column 1)`, naming nothing."""
    (tmp_path / "bom.toml").write_text("\ufeff" + GOOD, encoding="utf-8")
    assert load_policy(tmp_path / "bom.toml").version == parse_policy(GOOD, source="p.toml").version


SCOPED = "[from_account, to_account].exists(account, account.status == 'closed')"


def one_rule(tool: str, when: str) -> str:
    return (
        f"[tools.{tool}]\ndefault = 'allow'\n[[tools.{tool}.rules]]\nname = 'x'\n"
        f'when = "{when}"\noutcome = "deny"\nreason = "r"\n'
    )


def test_a_macros_variable_named_like_an_account_is_not_that_account() -> None:
    """In `[from_account, to_account].exists(account, ...)`, `account` is each account listed, which every
    transfer has: the rule loads, and denies a transfer touching a closed account."""
    policy = parse_policy(one_rule("transfer_funds", SCOPED), source="p.toml", catalog=TOOL_ARGUMENTS)
    closed = AccountFacts("ACC-002", "Bob", "closed", "USD", 0)
    accounts = {"from_account": AccountFacts("ACC-001", "Alice", "open", "USD", 100), "to_account": closed}
    transfer = CallFacts("transfer_funds", {}, "alice", accounts=accounts)
    assert policy.decide(transfer).outcome is Outcome.DENY
    accounts["to_account"] = AccountFacts("ACC-002", "Bob", "open", "USD", 0)
    assert policy.decide(transfer).outcome is Outcome.ALLOW
    visible = "roles.exists(from_account, from_account == 'auditor') || 'owner' in account.access"
    seeing = parse_policy(f'[accounts]\nvisible = "{visible}"\n' + GOOD, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert seeing.sees(CallFacts("get_account_balance", {}, "audit", ("auditor",)))


@pytest.mark.parametrize(
    "when",
    [
        "[1].exists(account, account > 0) || account.status == 'closed'",  # read outside its macro too
        "(" * 45 + SCOPED + ")" * 45,  # too deep to read its scopes: the engine's names, as before
    ],
    ids=["read-outside", "unread"],
)
def test_an_account_read_outside_any_macro_naming_it_is_still_refused(when: str) -> None:
    with pytest.raises(PolicyError, match="reads account, which a call of transfer_funds never has"):
        parse_policy(one_rule("transfer_funds", when), source="p.toml", catalog=TOOL_ARGUMENTS)


class _CountedLines(list[str]):
    """A file's lines that count how often one is read."""

    reads = 0

    def __iter__(self) -> Iterator[str]:
        for line in super().__iter__():
            self.reads += 1
            yield line

    def __getitem__(self, index: Any) -> Any:
        self.reads += 1
        return super().__getitem__(index)


class _CountedText(str):
    """Policy text whose lines, once split, count their reads."""

    lines = _CountedLines()

    def splitlines(self, keepends: bool = False) -> list[str]:
        self.lines = _CountedLines(super().splitlines(keepends))
        return self.lines


def _rules(count: int, extra: str) -> _CountedText:
    rule = "[[tools.transfer_funds.rules]]\nname = 'r{}'\nwhen = 'amount_minor > 1.5'\noutcome = 'deny'\nreason = 'r'\n"
    return _CountedText(
        "[tools.transfer_funds]\ndefault = 'allow'\n" + "".join(rule.format(i) + extra for i in range(count))
    )


@pytest.mark.parametrize("extra", ["", "memo = 'x'\n"], ids=["loads", "a-problem-per-rule"])
def test_loading_reads_each_line_a_bounded_number_of_times(extra: str) -> None:
    """`serve` loads its policy at start: the work grows with the file, not with its square (finding each
    warning's or problem's line rescanned the whole file)."""
    for count in (50, 400):
        text = _rules(count, extra)
        with contextlib.suppress(PolicyError):
            assert len(parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS).warnings) == count
        assert 0 < text.lines.reads <= 2 * len(text.lines)
