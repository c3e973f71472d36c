"""The idempotency key: where a client puts it and what a valid one looks like, for every layer.

Strict visible ASCII, like account ids, so that no look-alike or invisible character can make
two keys that read the same differ (or two that differ read the same) in the audit and in logs.
"""

import re
from typing import TypeGuard

IDEMPOTENCY_KEY_META = "io.bankgate/idempotency-key"
"""The `_meta` key a client sets to make a call safely retryable; never part of the model's arguments."""

IDEMPOTENCY_KEY_RULE = "1 to 200 visible ASCII characters without spaces"
"""The rule in words, for the refusal each layer raises with its own field."""

_PATTERN = re.compile(r"[\x21-\x7e]{1,200}")


def is_idempotency_key(value: object) -> TypeGuard[str]:
    """Whether `value` is a valid key (UUIDs, approval ids, `op:123`)."""
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None
