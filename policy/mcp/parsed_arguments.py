"""A call's arguments parsed once: the server's edge check parses them, `prepare` reuses that result.

A context variable, because the edge middleware awaits the tool handler in its own context and
the two share no object the SDK lets either extend; keyed by the identity of the raw arguments,
so a result is only reused for the very arguments it was parsed from.
"""

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from policy.action import Action

_PARSED: ContextVar[tuple[object, dict[str, Any]] | None] = ContextVar("bankgate_parsed_arguments", default=None)


class Parsed:
    """While the call runs (`with Parsed(raw, canonical)`): `raw` (the request's `arguments`) parses
    to `canonical`. A plain class, not `@contextmanager`: every call enters it, and a generator's
    machinery costs twice its work."""

    def __init__(self, raw: object, canonical: dict[str, Any]) -> None:
        self._parsed = (raw, canonical)

    def __enter__(self) -> None:
        self._token = _PARSED.set(self._parsed)

    def __exit__(self, *exc_info: object) -> None:
        _PARSED.reset(self._token)


def canonical_arguments(action: Action, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """`action.canonical(raw)`, taken from the edge check when it parsed these very arguments."""
    known = _PARSED.get()
    if known is not None and known[0] is raw:
        return known[1]
    return action.canonical(raw or {})
