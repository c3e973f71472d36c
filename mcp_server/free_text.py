"""Parsers for the free-text fields the ledger stores: transfer memos and account owners.

Both are shown to humans on approval screens and statements, so control and formatting
characters (including bidirectional overrides that can disguise text) are refused.
"""

from __future__ import annotations

import unicodedata

from mcp_server.errors import ErrorCode, LedgerError

MAX_MEMO_LENGTH = 140
MAX_OWNER_LENGTH = 100
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def parse_memo(value: object) -> str | None:
    """A memo is optional: ``None`` or blank means no memo; otherwise trimmed, printable text."""
    if value is None:
        return None
    text = _printable_text(value, "memo", MAX_MEMO_LENGTH, ErrorCode.INVALID_MEMO)
    return text or None


def parse_owner(value: object) -> str:
    """An owner name is required, trimmed, printable text."""
    text = _printable_text(value, "owner", MAX_OWNER_LENGTH, ErrorCode.INVALID_OWNER)
    if not text:
        raise LedgerError(ErrorCode.INVALID_OWNER, "owner must not be empty.", field="owner")
    return text


def _printable_text(value: object, field: str, max_length: int, code: ErrorCode) -> str:
    if not isinstance(value, str):
        raise LedgerError(code, f"{field} must be text.", field=field)
    text = value.strip()
    if len(text) > max_length:
        raise LedgerError(code, f"{field} must be at most {max_length} characters.", field=field)
    if any(unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES for ch in text):
        raise LedgerError(code, f"{field} contains control or invisible formatting characters.", field=field)
    return text
