"""Exact money: integer minor units inside, `Decimal` at the edges, never float arithmetic.

Amount rules (what `parse_amount` accepts), chosen so a model's JSON can never be
misread by a factor of ten or a thousand:

* `int` and `Decimal` values, and JSON floats such as `0.1` or `500.0`, which are
  read through `repr` so `0.1` means exactly one tenth. Numbers are judged by value:
  `500.0` is a valid JPY amount.
* Strings of ASCII digits with an optional `.` and fraction (`"500"`, `"500.00"`),
  optionally surrounded by whitespace. A string may not carry more decimals than the
  currency has (`"5.000"` is refused for USD rather than guessed to mean 5 or 5000).
  Signs, currency symbols, thousands separators (`"5,000"`), decimal commas
  (`"5,00"`), exponents (`"1e3"`) and non-ASCII digits are refused.
* `bool`, `None`, NaN, infinities, zero and negatives are refused, as is anything above
  the caller's ceiling, and any number written out with more than 40 digits (no valid amount
  has that many): refused before the currency is known, at the tools' edge, so a JSON integer
  no float can hold never reaches the MCP SDK's own validation, which would echo it.
"""

import math
import re
from decimal import Decimal

from mcp_server.ledger.errors import ErrorCode, LedgerError

# ISO 4217 minor-unit exponents for the currencies the ledger will hold.
MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "SGD": 2,
    "HKD": 2,
    "CNY": 2,
    "INR": 2,
    "MXN": 2,
    "BRL": 2,
    "ZAR": 2,
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}

_SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£"}
_SHOWN: dict[str, tuple[int, str, str]] = {
    code: (exponent, _SYMBOLS.get(code, ""), "" if code in _SYMBOLS else f" {code}")
    for code, exponent in MINOR_UNITS.items()
}
"""By supported code: its minor-unit digits, and what `format_amount` writes before and after the number."""

_AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.([0-9]+))?")
_SIGNED_NUMBER_TEXT = re.compile(r"[+-][0-9.]+")
_MAX_AMOUNT_TEXT = 40
"""The most characters an amount's text may have, and the most digits a number may be written out with."""
_FIELD = "amount"

DEFAULT_MAX_AMOUNT_MINOR = 1_000_000_00
"""The ceiling on one amount, in minor units (1,000,000.00), unless configured (`Settings.max_amount_minor`)."""
MAX_AMOUNT_MINOR_CEILING = 10**15
"""The most `max_amount_minor` may be: exact in any JSON reader (< 2**53), and far from overflowing a 64-bit balance."""
MAX_BALANCE_MINOR = 2**53 - 1
"""The most any balance may hold, in minor units, either way (the system accounts run negative): results carry
`balance_minor` as a JSON number, which readers beyond it round; and a 64-bit column would overflow (on
SQLite, into a float) long before deposits stopped otherwise."""


def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency`; unknown codes are `invalid_currency`.

    Looked up first, as `parse_currency` would accept it (a supported code is a `str` key), since
    every amount shown or parsed asks; only a miss goes through `parse_currency`, which refuses it."""
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):  # not a supported code, or not even hashable
        return MINOR_UNITS[parse_currency(currency)]


def parse_currency(value: object, field: str = "currency") -> str:
    """Return `value` if it is a supported upper-case ISO 4217 code."""
    if isinstance(value, str) and value in MINOR_UNITS:
        return value
    if isinstance(value, str) and value.upper() in MINOR_UNITS:
        hint = f"currency codes are upper-case, e.g. {value.upper()}"
    else:
        hint = "such as USD, EUR, GBP or JPY"
    raise LedgerError(ErrorCode.INVALID_CURRENCY, f"{field} must be a supported ISO 4217 code ({hint}).", field=field)


def parse_amount(value: object, currency: str, *, ceiling_minor: int) -> int:
    """Parse a requested amount into positive integer minor units of `currency`."""
    exponent = minor_units(currency)
    amount = _to_decimal(value)
    if -int(amount.as_tuple().exponent) > exponent:
        allowed = "no decimal places" if exponent == 0 else f"at most {exponent} decimal places"
        raise LedgerError(ErrorCode.INVALID_AMOUNT, f"{currency} amounts have {allowed}.", field=_FIELD)
    minor = amount.scaleb(exponent)  # exact: a whole number of minor units, its decimals checked above
    if minor > ceiling_minor:
        raise _over_ceiling(ceiling_minor, currency)
    return int(minor)


def check_amount_minor(value: object, currency: str, *, ceiling_minor: int) -> int:
    """Validate an amount already in minor units (as the policy layer stores it)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid("amount must be a whole number of minor units.")
    if value <= 0:
        raise _invalid("amount must be greater than zero.")
    if value > ceiling_minor:
        raise _over_ceiling(ceiling_minor, currency)
    return value


def canonical_amount(value: object) -> str:
    """The normal form of a valid-looking amount, before its currency is known: text keeps the
    decimals it was written with (`" 5.000"` -> `"5.000"`), a number is judged by value
    (`500.0` -> `"500"`).

    It keeps exactly what `parse_amount` judges, so checking the normal form against the
    currency later refuses and accepts the same amounts as checking the raw value would
    (stripping zeros here once let `"5.000"` through as 5 USD).
    """
    return f"{_to_decimal(value):f}"


def amount_identity(value: object) -> str:
    """The value of a valid-looking amount, however spelled (`"500.00"`, `500` -> `"500"`):
    what the ledger's own idempotency keys compare, so a replay spelled differently is still a
    replay. Never validate with it: it drops the decimals the currency check judges.
    """
    return format(_drop_trailing_zeros(_to_decimal(value)), "f")


def to_decimal(minor: int, currency: str) -> Decimal:
    """Minor units as an exact `Decimal` in major units (`500000, "USD"` -> `5000.00`)."""
    return Decimal(minor).scaleb(-minor_units(currency))


def format_amount(minor: int, currency: str) -> str:
    """Human form: `$5,000.00`, `€12.50`, `-£3.00`, `1,000 JPY`.

    In integers, exactly (every call's question and answer show a few amounts): the major part grouped,
    then the minor units' digits."""
    try:
        exponent, before, after = _SHOWN[currency]
    except (KeyError, TypeError):  # not a supported code (not even hashable): refused as `minor_units` refuses it
        parse_currency(currency)
        raise
    sign, magnitude = ("-", -minor) if minor < 0 else ("", minor)
    if exponent:
        scale = 10**exponent
        number = f"{magnitude // scale:,}.{magnitude % scale:0{exponent}d}"
    else:
        number = f"{magnitude:,}"
    return f"{sign}{before}{number}{after}"


def _to_decimal(value: object) -> Decimal:
    """A positive finite `Decimal` whose exponent counts the decimals that matter. Text, what every
    call's arguments carry, is tried first (no other kind is a `str`); its digits need no count, as
    `_decimal_from_text` admits no more than `_MAX_AMOUNT_TEXT` characters."""
    text = value if isinstance(value, str) else None
    amount = _decimal_from_number(value) if text is None else _decimal_from_text(text)
    if amount <= 0:
        raise _invalid("amount must be greater than zero.")
    if text is None and _digits(amount) > _MAX_AMOUNT_TEXT:
        raise _invalid(f"amount has more than {_MAX_AMOUNT_TEXT} digits; no valid amount has that many.")
    return amount


def _decimal_from_number(value: object) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _invalid("amount must be a number or a decimal string such as 12.50.")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid("amount must be a finite number.")
        return _drop_trailing_zeros(Decimal(repr(value)))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _invalid("amount must be a finite number.")
        return _drop_trailing_zeros(value)
    raise _invalid("amount must be a number or a decimal string such as 12.50.")


def _digits(amount: Decimal) -> int:
    """How many digits `amount` has written out in full (`format(amount, "f")`), counted without writing it."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite by construction
    return max(len(digits) + exponent, 1) + max(-exponent, 0)


def plain_decimal(value: str) -> Decimal | None:
    """`value` as a `Decimal` if it is written as amount text may be (zero too), else None: for amounts
    that are not a call's (a hypothetical balance), which `parse_amount`'s refusals would misname."""
    try:
        return _decimal_from_text(value)
    except LedgerError:
        return None


def _decimal_from_text(value: str) -> Decimal:
    text = value.strip(" \t\r\n")
    if len(text) <= _MAX_AMOUNT_TEXT and _AMOUNT_TEXT.fullmatch(text):
        return Decimal(text)  # the pattern admits only valid decimals; what follows only names the flaw
    if not text:
        raise _invalid("amount is empty; give a number such as 12.50.")
    if len(text) > _MAX_AMOUNT_TEXT:
        raise _invalid("amount is too long to be a valid amount.")
    if _SIGNED_NUMBER_TEXT.fullmatch(text):
        raise _invalid("amount must be greater than zero and written without a sign.")
    raise _invalid(
        "amount must be a plain decimal number such as 1234.56, without currency symbols, "
        "thousands separators, decimal commas or exponents."
    )


def _drop_trailing_zeros(amount: Decimal) -> Decimal:
    """`500.00` -> `500`, exactly (`Decimal.normalize` would round to 28 digits)."""
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite by construction
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    return Decimal((sign, digits, exponent))


def _invalid(message: str) -> LedgerError:
    return LedgerError(ErrorCode.INVALID_AMOUNT, message, field=_FIELD)


def _over_ceiling(ceiling_minor: int, currency: str) -> LedgerError:
    return _invalid(f"amount exceeds the limit of {format_amount(ceiling_minor, currency)} per transaction.")
