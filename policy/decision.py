"""The policy's answer for one call, with what it was based on (for the audit and the approver)."""

from dataclasses import dataclass

from policy.channel import Channel
from policy.outcome import Outcome


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]
    matched_rules: tuple[str, ...]
    policy_version: str
    confirm: str | None = None
    channel: Channel | None = None
    """Through which channel the approval may be given (set when the outcome requires one)."""
    failure: str | None = None
    """Why a rule could not be evaluated (the deny's cause), for the operator (`policy explain`), never the
    caller: the engine's message may quote facts the caller may not see, such as a payee's balance."""

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)
