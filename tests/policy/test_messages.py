"""Confirmation messages owned by the policy: checked when loaded, rule wording over tool wording."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_server.tools import TOOL_ARGUMENTS
from policy.action import Call
from policy.decision import Decision
from policy.facts import CallFacts
from policy.loader import PolicyError, parse_policy
from policy.messages import worded
from policy.outcome import Outcome
from policy.results import GateResult, Status
from tests.server.cli_process import in_process_cli

WORDED = """
[tools.transfer_funds]
default = "require_approval"
reason = "Moving money needs a human's approval."
messages = { rejected = "Transfer {reference} of {amount} to {to_account} rejected. No changes have been made.", \
cancelled = "Action cancelled. No changes have been made to your account." }

[[tools.transfer_funds.rules]]
name = "above-ceiling"
when = "amount_minor > minor(50000)"
outcome = "deny"
reason = "Transfers above 50,000.00 are not allowed."
messages = { denied = "{amount} is above your limit. ({default})" }
"""


def test_rule_wording_wins_over_the_tool_and_defaults_stay() -> None:
    policy = parse_policy(WORDED, source="p.toml", catalog=TOOL_ARGUMENTS)
    call = Call("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "60000"}, "ann")
    denied = Decision(Outcome.DENY, ("Too much.",), ("above-ceiling",), policy.version)
    result = worded(policy, call, denied, GateResult(Status.DENIED, "Action 'transfer_funds' was denied by policy."))
    assert result.message == "60000 is above your limit. (Action 'transfer_funds' was denied by policy.)"

    rejected = worded(policy, call, None, GateResult(Status.REJECTED, "built-in", approval_ref="APR-1"))
    assert rejected.message == "Transfer APR-1 of 60000 to ACC-002 rejected. No changes have been made."
    assert rejected.approval_ref == "APR-1" and rejected.status is Status.REJECTED

    expired = GateResult(Status.EXPIRED, "built-in")
    assert worded(policy, call, None, expired) is expired, "a status the policy does not word keeps its sentence"
    unmatched = Decision(Outcome.DENY, ("x",), (), policy.version)
    assert worded(policy, call, unmatched, GateResult(Status.DENIED, "built-in")).message == "built-in"


def test_a_rule_that_could_not_be_evaluated_is_not_worded_as_if_it_held() -> None:
    """Its call is denied (failing closed), but not for the rule's reason: the caller must not read "above your
    limit" for a rule that merely failed to evaluate. The tool's own wording, if any, still applies."""
    policy = parse_policy(WORDED, source="p.toml", catalog=TOOL_ARGUMENTS)
    call = Call("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "60000"}, "ann")
    failed = Decision(Outcome.DENY, ("Rule 'above-ceiling' could not be evaluated.",), ("above-ceiling",),
                      policy.version, failure="no such key")  # fmt: skip
    result = worded(policy, call, failed, GateResult(Status.DENIED, "Action 'transfer_funds' was denied by policy."))
    assert result.message == "Action 'transfer_funds' was denied by policy."


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ('{ approved = "ok" }', "tools.transfer_funds.messages.approved: unknown status"),
        ('{ rejected = "no {pin}" }', "names an unknown fact {pin}"),
        ('{ rejected = "{amount.__class__}" }', "may only name facts as {name}"),
        ('{ rejected = "{amount!r}" }', "may only name facts as {name}"),
        ('{ rejected = "{amount:>99999}" }', "may only name facts as {name}"),
        ('{ rejected = "brace {" }', "is not a valid template"),
        ('{ rejected = "" }', "must be a non-empty string"),
        ('"rejected"', "must be a table of messages by status"),
    ],
    ids=["status", "fact", "attribute", "conversion", "format-spec", "brace", "empty", "not-a-table"],
)
def test_bad_messages_are_refused_where_they_are(messages: str, says: str) -> None:
    text = f'[tools.transfer_funds]\ndefault = "allow"\nmessages = {messages}\n'
    with pytest.raises(PolicyError) as error:
        parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert "p.toml:3: tools.transfer_funds.messages" in str(error.value) and says in str(error.value)


def test_policy_check_validates_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(WORDED, encoding="utf-8")
    bad.write_text(WORDED.replace("{to_account}", "{payee}"), encoding="utf-8")
    cli = in_process_cli(tmp_path, monkeypatch, capsys)
    assert cli("policy", "check", str(good)).returncode == 0
    refused = cli("policy", "check", str(bad))
    assert refused.returncode != 0 and "unknown fact {payee}" in refused.stdout + refused.stderr


WORDED_BELOW_A_DENY = """
[tools.transfer_funds]
default = "allow"

[[tools.transfer_funds.rules]]
name = "small"
when = "amount_minor <= minor(50000)"
outcome = "allow"
reason = "Small transfers go at once."
messages = { executed = "Sent {amount} at once: no approval was needed." }

[[tools.transfer_funds.rules]]
name = "large"
when = "amount_minor > minor(1000)"
outcome = "require_approval"
reason = "Transfers above 1,000.00 need approval."
messages = { denied = "No approver could be reached for {amount}; try again from a client with forms." }

[[tools.transfer_funds.rules]]
name = "ceiling"
when = "amount_minor > minor(10000)"
outcome = "deny"
reason = "Transfers above 10,000.00 are refused."
"""


@pytest.mark.parametrize(
    ("amount", "outcome", "status", "told"),
    [
        (20_000_00, Outcome.DENY, Status.DENIED, "Action 'transfer_funds' was denied by policy."),
        (2_000_00, Outcome.REQUIRE_APPROVAL, Status.EXECUTED, "Transferred $2,000.00 after approval."),
    ],
    ids=["denied-by-the-ceiling", "executed-after-approval"],
)
def test_only_the_rules_that_decided_word_the_result(amount: int, outcome: Outcome, status: Status, told: str) -> None:
    """Every matching rule is listed, but only those whose outcome won decided the call: a losing rule's wording
    would tell the caller a reason that is false ("no approver could be reached" for a transfer the ceiling
    refused; "no approval was needed" for one a human approved)."""
    policy = parse_policy(WORDED_BELOW_A_DENY, source="p.toml", catalog=TOOL_ARGUMENTS)
    facts = CallFacts("transfer_funds", {"amount": str(amount // 100)}, "ann", amount_minor=amount)
    decision = policy.decide(facts)
    assert decision.outcome is outcome and len(decision.matched_rules) > 1
    call = Call("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "x"}, "ann")
    assert worded(policy, call, decision, GateResult(status, told)).message == told


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("require_approval", "rejected"),
        ("require_approval", "cancelled"),
        ("require_approval", "expired"),
        ("deny", "executed"),
        ("allow", "denied"),
    ],
)
def test_a_rules_wording_for_an_end_it_never_decides_is_refused(outcome: str, status: str) -> None:
    """A rejected, cancelled or expired call is settled by its human's answer (or its absence), with no decision
    taken, so only its tool's wording can reach the caller; a deny rule never decides an executed call, nor an
    allow rule a denied one. Such wording loaded and was never shown: refused where it is, saying where to put it."""
    text = (
        '[tools.transfer_funds]\ndefault = "allow"\n\n[[tools.transfer_funds.rules]]\nname = "large"\n'
        f'when = "amount_minor > minor(1000)"\noutcome = "{outcome}"\nreason = "r"\n'
        f'messages = {{ {status} = "Transfer {{reference}} {status}." }}\n'
    )
    with pytest.raises(PolicyError) as error:
        parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert f"p.toml:9: tools.transfer_funds.rules[0].messages.{status}: " in str(error.value)
    assert "[tools.transfer_funds.messages]" in str(error.value)


@pytest.mark.parametrize(
    ("outcome", "statuses"),
    [("require_approval", ("executed", "denied")), ("deny", ("denied",)), ("allow", ("executed",))],
)
def test_a_rule_words_every_end_it_decides(outcome: str, statuses: tuple[str, ...]) -> None:
    worded = ", ".join(f'{status} = "{status} {{amount}}"' for status in statuses)
    text = (
        '[tools.transfer_funds]\ndefault = "require_approval"\n\n[[tools.transfer_funds.rules]]\nname = "large"\n'
        f'when = "amount_minor > minor(1000)"\noutcome = "{outcome}"\nreason = "r"\nmessages = {{ {worded} }}\n'
    )
    policy = parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert set(policy.tools["transfer_funds"].rules[0].messages) == set(statuses)
