"""The one error type the ledger raises for anything a caller or user can fix.

Every refusal carries a stable snake_case `code` (for programs and tests), a `message`
that is safe to relay to a person verbatim (no stack traces, no secrets, no echo of
arbitrary input), and the `field` of the request at fault when there is one.
"""

from enum import StrEnum

from policy.results import Refusal


class ErrorCode(StrEnum):
    """Stable machine-readable reasons; renaming one is a breaking API change."""

    INVALID_AMOUNT = "invalid_amount"
    INVALID_ACCOUNT_ID = "invalid_account_id"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_MEMO = "invalid_memo"
    INVALID_OWNER = "invalid_owner"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_LIMIT = "invalid_limit"
    INVALID_PRINCIPAL = "invalid_principal"
    INVALID_RELATION = "invalid_relation"
    INVALID_ROLE = "invalid_role"
    UNKNOWN_ACCOUNT = "unknown_account"
    ACCOUNT_EXISTS = "account_exists"
    ACCOUNT_CLOSED = "account_closed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    BALANCE_LIMIT = "balance_limit"
    CURRENCY_MISMATCH = "currency_mismatch"
    SAME_ACCOUNT = "same_account"
    BALANCE_NOT_ZERO = "balance_not_zero"
    SWEEP_OVER_LIMIT = "sweep_over_limit"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    DATABASE_UNAVAILABLE = "database_unavailable"


class LedgerError(Refusal):
    """A refused request. Raising it inside a transaction means nothing was changed.

    It is the policy layer's `Refusal`, so the gate reports it as a business refusal as is.
    """

    def __init__(self, code: ErrorCode | str, message: str, *, field: str | None = None) -> None:
        super().__init__(str(ErrorCode(code)), message, field)

    def __repr__(self) -> str:
        return f"LedgerError({self.code!r}, {self.message!r}, field={self.field!r})"
