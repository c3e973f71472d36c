"""Dynamic linking: the WebAuthn challenge of a decision commits to exactly what was decided.

The challenge is SHA-256 over the canonical JSON of the approval's reference, its binding
digest (tool + arguments + principal + roles + policy version + key), the digest of the question
as stored and displayed, the verdict, and a fresh single-use server nonce with its expiry. So
a signature is valid for one verdict on one question of one approval, once, and any later edit
of the question or the binding makes it fail verification (at the desk and offline).
"""

import hashlib
from dataclasses import asdict, dataclass

from policy.canonical import canonical_json, digest

PURPOSE = "bankgate desk decision v1"
"""Bound into every challenge, so an assertion made for anything else never passes as a decision."""
VERDICTS = ("approved", "rejected")


def question_sha256(question: str) -> str:
    """The question's digest as the audit records carry it (`question_sha256`)."""
    return digest(question)


@dataclass(frozen=True)
class ChallengeInputs:
    """What a decision's signature commits to; stored with the decision to re-verify it."""

    approval_ref: str
    binding: str
    question_sha256: str
    verdict: str
    nonce: str
    nonce_expires_at: int

    def encoding(self) -> str:
        """The canonical text hashed into the challenge (sorted keys, no whitespace)."""
        return canonical_json({"purpose": PURPOSE, **asdict(self)})

    def challenge(self) -> bytes:
        return hashlib.sha256(self.encoding().encode()).digest()
