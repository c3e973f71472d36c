"""Canonical JSON and digests: one byte-exact rendering for everything that is hashed or bound."""

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal values always render to equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    """Hex SHA-256 of the canonical rendering."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
