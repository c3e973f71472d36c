"""`channel` in policy files: checked with clear errors, shown by `policy check`, and combined
strictest-first when several approval rules match."""

from pathlib import Path

import pytest

from mcp_server.cli.admin import policy_check
from mcp_server.tools import TOOL_ARGUMENTS
from policy.channel import Channel
from policy.facts import CallFacts
from policy.loader import PolicyError, load_policy, parse_policy
from policy.outcome import Outcome

STRICT = Path(__file__).parents[2] / "docs" / "examples" / "strict_bank_policy.toml"


def call(tool: str, amount_minor: int) -> CallFacts:
    return CallFacts(tool=tool, arguments={}, principal="p", roles=("operator",), amount_minor=amount_minor)


def test_the_strict_bank_example_passes_policy_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert policy_check(STRICT) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "large-needs-the-desk -> require_approval (desk)" in out
    assert "close_account: default require_approval (desk)" in out


@pytest.mark.parametrize(
    ("tool", "amount", "channel"),
    [
        ("transfer_funds", 100_000, Channel.ANY),  # 1,000.00: the form will do
        ("transfer_funds", 100_001, Channel.DESK),  # above 1,000.00: the desk
        ("close_account", 0, Channel.DESK),  # every close
    ],
)
def test_the_strict_bank_example_sends_large_transfers_and_closes_to_the_desk(
    tool: str, amount: int, channel: Channel
) -> None:
    decision = load_policy(STRICT, catalog=TOOL_ARGUMENTS).decide(call(tool, amount))
    assert decision.outcome is Outcome.REQUIRE_APPROVAL and decision.channel is channel


def test_the_shipped_policy_takes_any_channel() -> None:
    decision = load_policy(None, catalog=TOOL_ARGUMENTS).decide(call("transfer_funds", 100))
    assert decision.channel is Channel.ANY


TOOL, RULE = "tools.transfer_funds", "tools.transfer_funds.rules[0]"
BASE = """
[tools.transfer_funds]
default = "allow"
{tool_extra}

[[tools.transfer_funds.rules]]
name = "large"
when = "amount_minor > 100"
outcome = "{outcome}"
reason = "r"
{rule_extra}
"""


@pytest.mark.parametrize(
    ("tool_extra", "outcome", "rule_extra", "message"),
    [
        ("", "require_approval", 'channel = "fax"', f"{RULE}.channel: must be one of form, desk, any, not 'fax'"),
        ("", "deny", 'channel = "desk"', f"{RULE}.channel: applies only to a rule whose outcome is require_approval"),
        ('channel = "desk"', "deny", "", f"{TOOL}.channel: applies only to a tool whose default or a rule is require_"),
        ('channel = 3', "require_approval", "", f"{TOOL}.channel: must be one of form, desk, any, not 3"),
    ],
    ids=["unknown-value", "on-a-deny-rule", "on-a-tool-that-never-asks", "not-a-string"],
)  # fmt: skip
def test_a_bad_channel_is_a_clear_error(tool_extra: str, outcome: str, rule_extra: str, message: str) -> None:
    text = BASE.format(tool_extra=tool_extra, outcome=outcome, rule_extra=rule_extra)
    with pytest.raises(PolicyError) as error:
        parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert any(message in line for line in error.value.lines()), error.value.lines()


def test_matched_rules_combine_to_the_strictest_channel() -> None:
    text = """
[tools.transfer_funds]
default = "require_approval"
reason = "r"
channel = "form"

[[tools.transfer_funds.rules]]
name = "large"
when = "amount_minor > 100"
outcome = "require_approval"
reason = "large"
channel = "desk"

[[tools.transfer_funds.rules]]
name = "medium"
when = "amount_minor > 10"
outcome = "require_approval"
reason = "medium"
"""
    policy = parse_policy(text, source="p.toml", catalog=TOOL_ARGUMENTS)
    assert policy.decide(call("transfer_funds", 5)).channel is Channel.FORM  # the tool's channel
    assert policy.decide(call("transfer_funds", 50)).channel is Channel.FORM  # a rule without one takes the tool's
    assert policy.decide(call("transfer_funds", 500)).channel is Channel.DESK  # desk beats form
