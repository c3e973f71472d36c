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

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)
