"""Canonical JSON and digests: one byte-exact rendering for everything that is hashed or bound."""

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
"""One encoder for every rendering (`json.dumps` with these options builds a new one per call, and a
gated call renders a dozen times); it keeps no state between calls, so threads may share it."""
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # the C accelerator's, if this interpreter has it
_RENDER = _MAKE_ENCODER(None, str, encode_basestring, None, ":", ",", True, False, True) if _MAKE_ENCODER else None
"""The C encoder `_CANONICAL.encode` builds on every call (`JSONEncoder.iterencode`, same options), built
once: a rendering is then one C call, not five Python calls around it. No circular-reference markers: they
would be shared between threads, and nothing rendered here refers to itself."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal values always render to equal bytes."""
    if _RENDER is None:  # an interpreter without the C accelerator
        return _CANONICAL.encode(value)
    return "".join(_RENDER(value, 0))


def digest(value: Any) -> str:
    """Hex SHA-256 of the canonical rendering."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
