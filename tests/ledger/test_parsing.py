"""Amounts, currencies, account ids and free text: exact parsing and clear refusals."""

from __future__ import annotations

from decimal import Decimal
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_server.ledger.errors import LedgerError
from mcp_server.ledger.free_text import is_principal_name, parse_memo, parse_owner
from mcp_server.ledger.identifiers import parse_account_id, parse_idempotency_key
from mcp_server.ledger.money import (
    MINOR_UNITS,
    amount_identity,
    canonical_amount,
    check_amount_minor,
    format_amount,
    minor_units,
    parse_amount,
    to_decimal,
)

CEILING = 10_000_000_00


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("500", "USD", 50000),
        ("500.00", "USD", 50000),
        ("500.5", "USD", 50050),
        (" 12.5 ", "USD", 1250),
        ("007.50", "USD", 750),
        (500, "USD", 50000),
        (Decimal("12.34"), "USD", 1234),
        (Decimal("12.3400"), "USD", 1234),
        (Decimal("1E+3"), "USD", 100000),
        (0.1, "USD", 10),
        (0.29, "USD", 29),  # 0.29 * 100 == 28.999999999999996 in float arithmetic
        (500.0, "USD", 50000),
        (500.0, "JPY", 500),
        ("500", "JPY", 500),
        ("1.125", "KWD", 1125),
        ("0.001", "BHD", 1),
        ("10000000.00", "USD", CEILING),
    ],
)
def test_parse_amount_is_exact(value: object, currency: str, minor: int) -> None:
    assert parse_amount(value, currency, ceiling_minor=CEILING) == minor


@pytest.mark.parametrize(
    ("value", "currency", "fragment"),
    [
        ("5.000", "USD", "at most 2 decimal places"),
        ("0.001", "USD", "at most 2 decimal places"),
        ("500.5", "JPY", "no decimal places"),
        ("500.0", "JPY", "no decimal places"),  # text is judged as written
        (0.001, "USD", "at most 2 decimal places"),
        (1e-30, "USD", "at most 2 decimal places"),
        (5e-324, "USD", "more than 40 digits"),
        ("10000000.01", "USD", "exceeds the limit of $10,000,000.00"),
        (1e20, "USD", "exceeds the limit"),
        (Decimal("1E+39"), "USD", "exceeds the limit"),
        (Decimal("1E+100000"), "USD", "more than 40 digits"),
        ("1" * 40, "USD", "exceeds the limit"),
        ("1" * 41, "USD", "too long"),
        (10**40, "USD", "more than 40 digits"),
        (1e308, "USD", "more than 40 digits"),
        ("-5", "USD", "greater than zero"),
        ("+5", "USD", "without a sign"),
        (-1, "USD", "greater than zero"),
        (0, "USD", "greater than zero"),
        ("0.00", "USD", "greater than zero"),
        (-0.0, "USD", "greater than zero"),
        (float("nan"), "USD", "finite"),
        (float("-inf"), "USD", "finite"),
        (Decimal("sNaN"), "USD", "finite"),
        ("NaN", "USD", "plain decimal number"),
        ("Infinity", "USD", "plain decimal number"),
        ("1e3", "USD", "exponents"),
        ("1e309", "USD", "exponents"),
        ("5,00", "USD", "decimal commas"),
        ("5,000.00", "USD", "thousands separators"),
        ("$5", "USD", "currency symbols"),
        ("5 00", "USD", "plain decimal number"),
        (".5", "USD", "plain decimal number"),
        ("٥", "USD", "plain decimal number"),  # Arabic-Indic five
        ("５", "USD", "plain decimal number"),  # fullwidth five
        ("", "USD", "empty"),
        ("   ", "USD", "empty"),
        (True, "USD", "must be a number"),
        (None, "USD", "must be a number"),
        ([5], "USD", "must be a number"),
        (b"5", "USD", "must be a number"),
    ],
)
def test_parse_amount_refuses_with_a_reason(value: object, currency: str, fragment: str) -> None:
    with pytest.raises(LedgerError) as caught:
        parse_amount(value, currency, ceiling_minor=CEILING)
    assert caught.value.code == "invalid_amount"
    assert caught.value.field == "amount"
    assert fragment in caught.value.message


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(LedgerError) as caught:
        parse_amount("5", "XYZ", ceiling_minor=CEILING)
    assert caught.value.code == "invalid_currency"
    with pytest.raises(LedgerError, match=r"upper-case, e\.g\. USD") as lower:
        minor_units("usd")
    assert lower.value.code == "invalid_currency"


def test_minor_units_follow_iso_4217() -> None:
    assert [minor_units(c) for c in ("USD", "EUR", "GBP", "CHF", "JPY", "KWD", "BHD")] == [2, 2, 2, 2, 0, 3, 3]


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (500000, "USD", "$5,000.00"),
        (1250, "EUR", "€12.50"),
        (7, "GBP", "£0.07"),
        (-300, "GBP", "-£3.00"),
        (500000, "CHF", "5,000.00 CHF"),
        (1000, "JPY", "1,000 JPY"),
        (1125, "KWD", "1.125 KWD"),
        (10_000_000_00, "USD", "$10,000,000.00"),
    ],
)
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@given(st.integers(-(2**63), 2**63), st.sampled_from(sorted(MINOR_UNITS)))
def test_format_amount_is_the_exact_decimal_grouped(minor: int, currency: str) -> None:
    """Formatted in integers, exactly as the `Decimal` in major units would be, for every supported currency."""
    number = f"{to_decimal(abs(minor), currency):,.{minor_units(currency)}f}"
    sign = "-" if minor < 0 else ""
    shown = {"USD": f"{sign}${number}", "EUR": f"{sign}€{number}", "GBP": f"{sign}£{number}"}
    assert format_amount(minor, currency) == shown.get(currency, f"{sign}{number} {currency}")


@pytest.mark.parametrize("currency", ["XXX", "usd", "", ["USD"]])
def test_format_amount_refuses_an_unsupported_currency(currency: object) -> None:
    with pytest.raises(LedgerError) as caught:
        format_amount(100, currency)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_currency"


@given(st.integers(1, CEILING), st.sampled_from(["USD", "JPY", "KWD"]))
def test_decimal_text_round_trips_exactly(minor: int, currency: str) -> None:
    assert parse_amount(str(to_decimal(minor, currency)), currency, ceiling_minor=CEILING) == minor


@given(st.integers(1, 10**15))
def test_json_floats_parse_like_their_text(minor: int) -> None:
    text = str(to_decimal(minor, "USD"))
    assert parse_amount(float(text), "USD", ceiling_minor=10**15) == minor


def test_canonical_amount_keeps_the_decimals_a_string_was_written_with() -> None:
    assert canonical_amount(" 12.50") == "12.50" and canonical_amount("5.000") == "5.000"
    assert canonical_amount(500) == canonical_amount(500.0) == canonical_amount(Decimal("500.00")) == "500"


def test_amount_identity_ignores_spelling() -> None:
    assert amount_identity("500.00") == amount_identity(500) == amount_identity(500.0) == "500"
    assert amount_identity(" 12.50") == amount_identity(Decimal("12.5")) == "12.5"


def judged(value: object, currency: str) -> int | str:
    """What `parse_amount` makes of `value`: minor units, or the refusal's message."""
    try:
        return parse_amount(value, currency, ceiling_minor=CEILING)
    except LedgerError as refusal:
        return refusal.message


written = st.builds(
    lambda whole, fraction: f"{whole}.{fraction}" if fraction else str(whole),
    st.integers(0, 10**9),
    st.text("0123456789", max_size=5),
)


@given(
    written
    | st.integers(1, 10**12)
    | st.integers(10**38, 10**400)
    | st.floats(0.001, 1e9)
    | st.floats(1e30, 1e308)
    | st.floats(5e-324, 1e-30)
    | st.decimals("0.001", "1e9", places=4),
    st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_amounts_carry_no_more_decimals_than_the_currency_in_canonical_form_too(value: object, currency: str) -> None:
    """Once the tool path stripped zeros before the currency check, and "5.000" passed as 5 USD."""
    try:
        canonical = canonical_amount(value)
    except LedgerError as refusal:  # refused before the currency is known: as it would be after
        assert judged(value, currency) == refusal.message
    else:
        assert judged(canonical, currency) == judged(value, currency)


@pytest.mark.parametrize(("value", "fragment"), [(True, "whole number"), (1.0, "whole number"), (0, "zero")])
def test_check_amount_minor(value: object, fragment: str) -> None:
    assert check_amount_minor(100, "USD", ceiling_minor=100) == 100
    with pytest.raises(LedgerError, match=fragment):
        check_amount_minor(value, "USD", ceiling_minor=100)
    with pytest.raises(LedgerError, match=r"exceeds the limit of \$1\.00"):
        check_amount_minor(101, "USD", ceiling_minor=100)


@pytest.mark.parametrize("value", ["ACC-1", "ACC-001", "ACC-123456789012"])
def test_account_ids_accepted(value: str) -> None:
    assert parse_account_id(value, "to_account") == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("АCC-001", "non-ASCII"),  # Cyrillic А
        ("ACC-００１", "non-ASCII"),  # fullwidth digits
        ("ACC‐001", "non-ASCII"),  # Unicode hyphen
        ("acc-001", "upper-case"),
        ("Acc-001", "upper-case"),
        (" ACC-001", "whitespace"),
        ("ACC-001\n", "whitespace"),
        ("ACC-1; DROP TABLE accounts", "whitespace"),
        ("ACC-1;DROP", "not a valid account id"),
        ("ACC-", "not a valid account id"),
        ("ACC-1234567890123", "not a valid account id"),
        ("SYS-EXTERNAL-USD", "not a valid account id"),
        ("", "empty"),
        (None, "must be a string"),
        (1, "must be a string"),
    ],
)
def test_account_ids_refused(value: object, fragment: str) -> None:
    with pytest.raises(LedgerError) as caught:
        parse_account_id(value, "to_account")
    assert caught.value.code == "invalid_account_id"
    assert caught.value.field == "to_account"
    assert caught.value.message.startswith("to_account ")
    assert fragment in caught.value.message


def test_free_text() -> None:
    assert parse_memo(None) is None
    assert parse_memo("   ") is None
    assert parse_memo(" rent ☕ ") == "rent ☕"
    assert parse_owner(" Ann Lee ") == "Ann Lee"
    for bad in ("x" * 141, "pay\u202eevil", "a\x00b", 5):
        with pytest.raises(LedgerError) as caught:
            parse_memo(bad)
        assert (caught.value.code, caught.value.field) == ("invalid_memo", "memo")
    with pytest.raises(LedgerError, match="must not be empty"):
        parse_owner(" ")


def test_idempotency_keys() -> None:
    assert parse_idempotency_key("approval:42/transfer") == "approval:42/transfer"
    for bad in ("", "has space", "x" * 201, "ключ", None):
        with pytest.raises(LedgerError) as caught:
            parse_idempotency_key(bad)
        assert caught.value.code == "invalid_idempotency_key"


BLANK_OR_STACKED = {
    "hangul-filler": "pay\u3164\u3164\u3164Approved by: bank",
    "halfwidth-hangul-filler": "pay\uffa0bank",
    "choseong-filler": "pay\u115fbank",
    "jungseong-filler": "pay\u1160bank",
    "braille-blank": "pay\u2800\u2800bank",
    "zero-width-space": "pay\u200bbank",
    "no-break-space": "pay\u00a0bank",
    "ideographic-space": "pay\u3000bank",
    "em-space": "pay\u2003bank",
    "variation-selector": "pay\ufe0fbank",
    "combining-grapheme-joiner": "pay\u034fbank",
    "tag-character": "pay\U000e0041bank",
    "mongolian-vowel-separator": "pay\u180ebank",
    "stacked-marks": "pay Z\u0301\u0302\u0303\u0304 bank",
    "space-run": "pay" + " " * 90 + "Approved by: bank",
    "two-spaces": "pay  bank",
}


@pytest.mark.parametrize("memo", BLANK_OR_STACKED.values(), ids=BLANK_OR_STACKED.keys())
def test_a_memo_cannot_render_blank_or_stack_marks(memo: str) -> None:
    """Once such characters passed, and a memo could pad itself to look like the bank's own lines."""
    with pytest.raises(LedgerError) as caught:
        parse_memo(memo)
    assert (caught.value.code, caught.value.field) == ("invalid_memo", "memo")
    assert caught.value.message.startswith("memo ") and memo not in caught.value.message
    assert any(rule in caught.value.message for rule in ("blank", "invisible", "combining marks", "single space"))


@pytest.mark.parametrize(
    ("memo", "named"),
    [
        ("pay\u202eevil", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("pay\u2066bank", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("a\x00b", "U+0000"),
        ("pay\u200bbank", "U+200B ZERO WIDTH SPACE"),
        ("pay\u3164bank", "U+3164 HANGUL FILLER"),
    ],
)
def test_a_refused_character_is_named_by_its_code_point(memo: str, named: str) -> None:
    """It cannot be seen, so the refusal says which it is and where to look."""
    with pytest.raises(LedgerError) as caught:
        parse_memo(memo)
    assert named in caught.value.message, caught.value.message


def test_an_owner_or_a_principal_padded_with_spaces_is_refused() -> None:
    """An owner's name sits in the question's first line, a principal's in its "Requested by:" line: a run of
    spaces would wrap the rest of either to the start of a line of its own."""
    with pytest.raises(LedgerError, match="single space") as caught:
        parse_owner("Ben" + " " * 80 + "Approved by: bank")
    assert (caught.value.code, caught.value.field) == ("invalid_owner", "owner")
    assert not is_principal_name("alice" + " " * 80 + "Reference: APR-0000000001")


@pytest.mark.parametrize(
    "memo",
    ["café", "cafe\u0301", "Vie\u0323\u0302t", "ค่าเช่า", "བསྒྲུབས", "rent ☕", "Miete für März", "家賃"],
    ids=["composed", "one-mark", "two-marks", "thai", "tibetan-stack", "emoji", "german", "cjk"],
)
def test_ordinary_memos_in_any_script_are_accepted(memo: str) -> None:
    assert parse_memo(memo) == memo


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
def test_a_printable_ascii_memo_needs_no_per_character_look_up(memo: str) -> None:
    """Printable ASCII (nearly every memo) is accepted without the per-character scans, unless it has spaces in a
    row; a control character still goes through them and is refused."""
    text = memo.strip()
    if all(" " <= ch <= "~" for ch in text):
        with patch("mcp_server.ledger.free_text.unicodedata.category", side_effect=AssertionError("scanned")):
            if "  " in text:
                with pytest.raises(LedgerError, match="spaces in a row"):
                    parse_memo(memo)
            else:
                assert parse_memo(memo) == (text or None)
    else:
        with pytest.raises(LedgerError, match="control or invisible"):
            parse_memo(memo)


@pytest.mark.parametrize(
    "name",
    [
        "carol@bank.example",
        "José Álvarez",
        "Αλέξανδρος",
        "Иван Петров",
        "山田太郎",
        "山田 Taro",
        "やまだ たろう",
        "ヤマダ・タロウ",
        "김민준 Kim",
        "陳大文 ㄔㄣˊ",
        "O'Brien-Smith 2",
    ],
)
def test_a_principal_may_be_named_in_any_one_script(name: str) -> None:
    assert is_principal_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "\u0430lice",  # Cyrillic a, then Latin: reads as "alice"
        "p\u0430ypal-ops",
        "\u03bfperator",  # Greek omicron
        "\U0001d41alice",  # MATHEMATICAL BOLD SMALL A
        "Ivan \u041f\u0435\u0442\u0440\u043e\u0432",  # Latin and Cyrillic words
        "\uff41lice",  # FULLWIDTH LATIN SMALL LETTER A: NFKC folds it to "alice"
    ],
    ids=["cyrillic-a", "cyrillic-inside", "greek-omicron", "math-bold", "latin-and-cyrillic", "fullwidth"],
)
def test_a_principal_mixing_scripts_is_refused_it_could_pass_for_another(name: str) -> None:
    """Every question prints its caller ("Requested by: ..."), and grants, daily totals and the audit log go by the
    exact name: "аlice" with a Cyrillic а is another principal that an approver reads as alice. A name's letters
    must be of one script (Unicode TR39's highly restrictive level: Latin may go with Han and Kana, Han and
    Bopomofo, or Han and Hangul, as Japanese, Chinese and Korean names do)."""
    assert not is_principal_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "\u0639\u0644\u064a \u0667",  # Arabic name, Arabic-Indic digit
        "\u062d\u0633\u06cc\u0646 \u06f7",  # Persian name, Extended Arabic-Indic digit
        "\u0905\u092e\u093f\u0924 \u0967",  # Devanagari name, Devanagari digit
        "\u0645\u064f\u062d\u064e\u0645\u064e\u0651\u062f",  # Arabic with its vowel marks
        "\u05d3\u05b8\u05bc\u05d5\u05b4\u05d3",  # Hebrew with its points
        "Ad\u00e9b\u00e1y\u1ecd\u0300",  # Yoruba: o with dot below and grave has no precomposed form
        "\u0639\u0644\u064a 7",
    ],
    ids=["arabic-digit", "persian-digit", "devanagari-digit", "arabic-marks", "hebrew-points", "yoruba", "ascii-digit"],
)
def test_a_principal_may_use_its_own_scripts_digits_and_marks(name: str) -> None:
    assert is_principal_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "alice\u0661",  # ARABIC-INDIC DIGIT ONE: reads as "alicel" or "alice1"
        "ops\u0967",  # DEVANAGARI DIGIT ONE after Latin letters
        "ali\u0483ce",  # COMBINING CYRILLIC TITLO on a Latin letter
        "a\u064elice",  # ARABIC FATHA on a Latin letter
    ],
    ids=["arabic-digit", "devanagari-digit", "cyrillic-mark", "arabic-mark"],
)
def test_a_principal_may_not_take_digits_or_marks_of_another_script(name: str) -> None:
    """Digits and marks are of a script too (Unicode TR39 counts them; mixed number systems are its own check):
    the letters' rule alone let "alice" followed by an Arabic-Indic one, which reads as "alice1", name a caller."""
    assert not is_principal_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "bjo\u0338rn",  # o with COMBINING LONG SOLIDUS OVERLAY reads as bjørn, another principal
        "\u006c\u0337ukasz",  # l with COMBINING SHORT SOLIDUS OVERLAY reads as łukasz
        "al\u0131\u0307ce",  # dotless i with a dot above reads as alice
        "ali\u0307ce",  # the dot above hides in i's own dot
    ],
    ids=["overlay-o", "overlay-l", "dotless-i-dot", "i-dot"],
)
def test_a_principal_may_not_draw_one_letter_as_another_with_a_mark(name: str) -> None:
    """A mark drawn through its letter (an overlay) or a dot above an i or j makes a look-alike of another letter
    or of the bare one, which NFKC does not fold: "bjo̸rn" is not bjørn, yet reads as bjørn."""
    assert not is_principal_name(name)


@pytest.mark.parametrize(
    "owner",
    ["B\u0435n Franklin", "\uff22en Franklin", "\U0001d401en Franklin", "Bjo\u0338rn Lund", "Al\u0131\u0307ce Smith"],
    ids=["cyrillic-e", "fullwidth-b", "math-bold-b", "overlay-o", "dotted-dotless-i"],
)
def test_an_owner_that_could_pass_for_another_is_refused(owner: str) -> None:
    """The question names each account by its owner ("to ACC-777 (Ben Franklin)"), the part of it an approver
    recognises: "Bеn Franklin" with a Cyrillic е is another payee that reads as Ben. An owner's name is held to a
    principal's script rule."""
    with pytest.raises(LedgerError) as caught:
        parse_owner(owner)
    assert (caught.value.code, caught.value.field) == ("invalid_owner", "owner")
    assert "one script" in caught.value.message and owner not in caught.value.message


@pytest.mark.parametrize(
    "owner", ["José Álvarez", "Иван Петров", "山田 Taro", "김민준 Kim", "Müller GmbH & Co. KG", "O'Brien-Smith 2"]
)
def test_an_owner_may_be_named_in_any_one_script(owner: str) -> None:
    assert parse_owner(owner) == owner
