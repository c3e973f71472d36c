"""Parsers for the identifiers a request may carry: customer account ids and idempotency keys.

Account ids are deliberately strict ASCII (`ACC-` then 1–12 digits, upper-case, no
whitespace) so that look-alikes such as a Cyrillic `А` or fullwidth `０` can never name
a different account than the one a human approved. System accounts use another prefix
(`SYS-`), so no tool input can ever address them.
"""

import re

from mcp_server.ledger.errors import ErrorCode, LedgerError
from policy.idempotency_key import IDEMPOTENCY_KEY_RULE, is_idempotency_key

ACCOUNT_ID_PATTERN = re.compile(r"ACC-[0-9]{1,12}")
SYSTEM_ACCOUNT_PREFIX = "SYS-EXTERNAL-"


def parse_account_id(value: object, field: str) -> str:
    """Return `value` if it is a customer account id such as `ACC-001`; else name the flaw."""
    if isinstance(value, str) and ACCOUNT_ID_PATTERN.fullmatch(value):
        return value
    raise LedgerError(ErrorCode.INVALID_ACCOUNT_ID, f"{field} {_account_id_flaw(value)}", field=field)


def system_account_id(currency: str) -> str:
    """The per-currency account standing for money outside the bank (funding, deposits)."""
    return SYSTEM_ACCOUNT_PREFIX + currency


def parse_idempotency_key(value: object, field: str = "idempotency_key") -> str:
    """A key by the one rule (`policy.idempotency_key`), as the ledger's refusal naming `field`."""
    if is_idempotency_key(value):
        return value
    raise LedgerError(ErrorCode.INVALID_IDEMPOTENCY_KEY, f"{field} must be {IDEMPOTENCY_KEY_RULE}.", field=field)


def _account_id_flaw(value: object) -> str:
    expected = "must look like ACC-001 ('ACC-' followed by 1 to 12 digits)"
    if not isinstance(value, str):
        return f"must be a string; {expected}."
    if not value:
        return f"is empty; it {expected}."
    if not value.isascii():
        return f"contains non-ASCII characters (look-alike letters or digits); it {expected}."
    if value != value.strip() or any(ch.isspace() for ch in value):
        return f"contains whitespace; it {expected}."
    if ACCOUNT_ID_PATTERN.fullmatch(value.upper()):
        return f"must use upper-case 'ACC-'; it {expected}."
    return f"is not a valid account id; it {expected}."
