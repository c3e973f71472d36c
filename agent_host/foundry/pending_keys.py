"""The idempotency key each approval a conversation left pending was asked under, for the call continuing it.

A `pending_approval` result tells the model to repeat the call with its `approval_ref`, which it does in a new
function call with a `call_id` of its own; the server holds a continuation to the key the approval was asked
under (part of what the desk signed), so the repeat is sent under that key. The keys are the asking
conversation's: conversations share one host and its MCP principal (the web chat's threads), and another's
model repeating the call with the reference would otherwise run an approval its person never asked for, and
be told its receipt. There, the repeat goes under its own `call_id`, which the server refuses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agent_host.approvers import epoch_of, long_past


class PendingKeys:
    """One conversation's pending approvals: the key each was asked under, and its deadline, by reference;
    forgotten once it settles or `LINK_GRACE_SECONDS` after its deadline (a model may never continue it)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, float | None]] = {}

    def key(self, call_id: str, ref: object) -> str:
        """The key of a call: its `call_id`, or for one continuing an approval this conversation left pending
        (`ref`, its `approval_ref`), the key that approval was asked under."""
        pending = self._keys.get(ref) if isinstance(ref, str) else None
        return call_id if pending is None else pending[0]

    def note(self, key: str, output: Mapping[str, Any]) -> None:
        """Remember a pending approval's key until it settles; a settled one's ref is not continued again
        (under its key the call would replay the stored outcome, reported as this call's)."""
        ref = output.get("approval_ref")
        if not isinstance(ref, str):
            return
        if output.get("status") == "pending_approval":
            self._forget_past()
            self._keys[ref] = (key, epoch_of(output.get("expires_at")))
        else:
            self._keys.pop(ref, None)

    def _forget_past(self) -> None:
        now = time.time()
        for ref in [ref for ref, (_, deadline) in self._keys.items() if long_past(deadline, now)]:
            del self._keys[ref]
