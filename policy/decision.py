"""The policy's answer for one call, with what it was based on (for the audit and the approver)."""

from dataclasses import dataclass

from policy.outcome import Outcome


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]
    matched_rules: tuple[str, ...]
    policy_version: str
    confirm: str | None = None

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)
