"""A call's arguments parsed once: the server's edge check parses them, `prepare` reuses that result.

A context variable, because the edge middleware awaits the tool handler in its own context and
the two share no object the SDK lets either extend; keyed by the identity of the raw arguments,
so a result is only reused for the very arguments it was parsed from.
"""

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from policy.action import Action

PARSED: ContextVar[tuple[object, dict[str, Any]] | None] = ContextVar("bankgate_parsed_arguments", default=None)
"""While the call runs: (the request's `arguments`, what they parse to). Set and reset by the edge check
itself, around its `call_next`: every call passes there, and even a plain class's enter and exit cost more
calls than the two the variable's own `set` and `reset` are."""


def canonical_arguments(action: Action, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """`action.canonical(raw)`, taken from the edge check when it parsed these very arguments."""
    known = PARSED.get()
    if known is not None and known[0] is raw:
        return known[1]
    return action.canonical(raw or {})
