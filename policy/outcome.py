"""The three outcomes a policy can give a call, ordered by how restrictive they are."""

from enum import StrEnum


class Outcome(StrEnum):
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"

    @property
    def rank(self) -> int:
        """Higher is more restrictive: when several rules match, the highest rank wins."""
        return _RANK[self]


_RANK = {Outcome.ALLOW: 0, Outcome.REQUIRE_APPROVAL: 1, Outcome.DENY: 2}
