"""Canonical JSON and digests: one byte-exact rendering for everything that is hashed or bound."""

import hashlib
import json
from typing import Any

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
"""One encoder for every rendering (`json.dumps` with these options builds a new one per call, and a
gated call renders a dozen times); it keeps no state between calls, so threads may share it."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal values always render to equal bytes."""
    return _CANONICAL.encode(value)


def digest(value: Any) -> str:
    """Hex SHA-256 of the canonical rendering."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
