"""JSON the store wrote itself, read back: `json.loads`'s answer, without its Python layers.

An approval read back carries two or three JSON columns (its arguments, its bound facts, its outcome), and
`json.loads` spends ten calls a column around its decoder's C scanner (`decode`, `raw_decode`, a whitespace
match either side). What this store writes (`policy.canonical.canonical_json`, `json.dumps`) has none around
it, so the scanner alone reads it; anything else (whitespace, trailing text, invalid JSON, and bytes: SQLite hands
back a column edited to a BLOB as such, which only `json.loads` decodes) is left to `json.loads`, whose answer or
error it then is.
"""

import json
from collections.abc import Callable
from typing import Any

_SCAN: Callable[[str | bytes, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""A default decoder's scanner (the C one where there is), as `json.loads` with no options uses; typeshed
leaves this attribute of `JSONDecoder` out."""


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`, the same value or the same error."""
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError, TypeError):  # TypeError: bytes, which the scanner does not take
        return json.loads(text)
    return value if end == len(text) else json.loads(text)
