"""A loaded policy: per-tool defaults and conditional rules, and the decision they give a call."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from policy.channel import DEFAULT_CHANNEL, Channel, strictest
from policy.decision import Decision
from policy.expressions import Condition, ExpressionError
from policy.facts import CallFacts
from policy.outcome import Outcome


@dataclass(frozen=True)
class Rule:
    name: str
    condition: Condition
    outcome: Outcome
    reason: str
    messages: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Confirmation messages by status when this rule matched (see `policy.messages`)."""
    channel: Channel | None = None
    """Where its approval may be given (`require_approval` rules only); None: the tool's channel."""


@dataclass(frozen=True)
class ToolPolicy:
    """How one tool is treated: `default` applies when no rule matches."""

    tool: str
    default: Outcome
    reason: str
    rules: tuple[Rule, ...] = ()
    confirm: str | None = None
    """An argument the approver must type back (e.g. the account id being closed)."""
    messages: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Confirmation messages by status (see `policy.messages`)."""
    channel: Channel = DEFAULT_CHANNEL
    """Where approvals of this tool may be given, unless a matched rule says otherwise."""

    @cached_property
    def variables(self) -> frozenset[str]:
        """The variables this tool's rules read, so costly facts are gathered only when used."""
        return frozenset().union(*(rule.condition.variables for rule in self.rules))

    @cached_property
    def worded(self) -> bool:
        """Whether the policy words any result of this tool (its own messages or a rule's): most tools' are not."""
        return bool(self.messages) or any(rule.messages for rule in self.rules)


@dataclass(frozen=True)
class Policy:
    tools: Mapping[str, ToolPolicy]
    version: str
    """Content hash of the policy's meaning (comments and layout do not change it)."""
    source: str
    visible: Condition | None = None
    """Who may learn anything about an account (`[accounts] visible`); None: everyone."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """What `policy check` warns of (`policy.lint`): rules that load but cannot mean what was meant."""

    def sees(self, facts: CallFacts) -> bool:
        """Whether the caller may learn anything about `facts`' `account`, even that it exists.

        The server answers a call naming an account the caller cannot see, as the account it
        reads, debits or closes, exactly as it answers one naming a missing account. A
        condition that cannot be evaluated hides the account (fail closed).
        """
        if self.visible is None:
            return True
        try:
            return self.visible.holds(facts)
        except ExpressionError:
            return False

    def variables(self, tool: str) -> frozenset[str]:
        """The variables the rules for `tool` read, so costly facts are gathered only when used."""
        policy = self.tools.get(tool)
        return policy.variables if policy else frozenset()

    def may_ask(self, tool: str) -> bool:
        """Whether any call of `tool` can need a human's approval (its default or one of its rules says so)."""
        policy = self.tools.get(tool)
        if policy is None:
            return False
        return Outcome.REQUIRE_APPROVAL in {policy.default, *(rule.outcome for rule in policy.rules)}

    def asks_by_default(self, tool: str) -> bool:
        """Whether `tool` needs a human's approval unless a rule says otherwise."""
        policy = self.tools.get(tool)
        return policy is not None and policy.default is Outcome.REQUIRE_APPROVAL

    def confirm_of(self, tool: str, arguments: Mapping[str, Any]) -> str | None:
        """The argument an approver of this call must type back, if the policy asks for one."""
        policy = self.tools.get(tool)
        return _carried(policy.confirm, arguments) if policy else None

    def messages_for(self, tool: str, decision: Decision | None = None) -> Mapping[str, str]:
        """The confirmation messages for a call of `tool`: the wording of the first rule that decided it over the
        tool's. Only a matched rule whose outcome is the decision's decided it: one outranked (an approval rule
        under a deny) or one that failed to evaluate would word the result with a reason that is false."""
        policy = self.tools.get(tool)
        if policy is None or not policy.worded:
            return {}
        merged = dict(policy.messages)
        if decision is None or decision.failure is not None:
            return merged
        for rule in reversed(policy.rules):
            if rule.name in decision.matched_rules and rule.outcome is decision.outcome:
                merged |= rule.messages
        return merged

    def decide(self, facts: CallFacts) -> Decision:
        """The most restrictive outcome among matching rules, else the tool's default.

        Fails closed: a tool the policy does not name is denied, and so is any call for
        which a rule cannot be evaluated.
        """
        tool = self.tools.get(facts.tool)
        if tool is None:
            return Decision(Outcome.DENY, (f"The policy does not allow the tool '{facts.tool}'.",), (), self.version)
        confirm = _carried(tool.confirm, facts.arguments)
        matched: list[Rule] = []
        for rule in tool.rules:
            try:
                if rule.condition.holds(facts):
                    matched.append(rule)
            except ExpressionError as exc:
                reason = f"Rule '{rule.name}' could not be evaluated for this call, so it is refused."
                return Decision(Outcome.DENY, (reason,), (rule.name,), self.version, confirm, failure=str(exc))
        if not matched:
            channel = tool.channel if tool.default is Outcome.REQUIRE_APPROVAL else None
            return Decision(tool.default, (tool.reason,), (), self.version, confirm, channel)
        outcome = max((rule.outcome for rule in matched), key=lambda o: o.rank)
        deciding = [rule for rule in matched if rule.outcome is outcome]
        channel = (
            strictest(rule.channel or tool.channel for rule in deciding)
            if outcome is Outcome.REQUIRE_APPROVAL
            else None
        )
        reasons = tuple(rule.reason for rule in deciding)
        return Decision(outcome, reasons, tuple(r.name for r in matched), self.version, confirm, channel)


def _carried(confirm: str | None, arguments: Mapping[str, Any]) -> str | None:
    """`confirm` if the call carries a value for it: an absent optional argument has nothing to type back."""
    return confirm if confirm is not None and arguments.get(confirm) not in (None, "") else None
