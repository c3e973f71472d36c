"""Parsers for the free-text fields the ledger stores: transfer memos and account owners.

Both are shown to humans on approval screens and statements, inside text the bank writes,
so they must not be able to pass for part of it. Refused (one rule for both fields):

* control and formatting characters, including bidirectional overrides that reorder text;
* characters that render as blank: Unicode's default-ignorable code points (zero-width
  characters, Hangul fillers such as U+3164, variation selectors, tags, ...), the Braille
  blank U+2800, and every space except the plain one (U+0020); a blank run could pad a memo
  until it seemed to end and the bank's own lines to begin;
* two or more plain spaces in a row, for the same reason: where a question wraps (the desk's page,
  the web card, the console's panel), a long run hangs at a line's end and the rest of the text
  starts the next line at its left edge, as the bank's own lines do;
* stacks of more than `MAX_COMBINING_MARKS` combining marks on one character, which spill
  over the lines above and below ("Zalgo" text). Scripts that use marks need at most that.
"""

import unicodedata
from itertools import pairwise
from typing import TypeGuard

from mcp_server.ledger.errors import ErrorCode, LedgerError

MAX_MEMO_LENGTH = 140
MAX_OWNER_LENGTH = 100
MAX_PRINCIPAL_LENGTH = 256
_SCRIPT_RULE = (
    "whose letters, digits and marks are of one script (Latin may go with Han and Kana, Han and Bopomofo, or Han "
    "and Hangul), with no mark drawn through a letter nor a dot above an i or j, and in Unicode form NFKC"
)
"""What `_one_script` holds a name to, as a relative clause."""
PRINCIPAL_RULE = (
    f"must be 1 to {MAX_PRINCIPAL_LENGTH} characters of visible text, without surrounding spaces or two in a row, "
    + _SCRIPT_RULE
)
"""What `is_principal_name` holds a name to, as a sentence's end ("principal must be ...")."""
MAX_COMBINING_MARKS = 3
_LETTER_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo"})
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
"""The scripts one name may mix (Unicode TR39's "highly restrictive" level): Japanese, Chinese and Korean names."""
_SCRIPT_ALIASES = {"CJK": "HAN", "ARABIC-INDIC": "ARABIC", "EXTENDED": "ARABIC"}
"""Names whose first word is not their script's: CJK ideographs, (EXTENDED) ARABIC-INDIC DIGIT ..."""
_COMBINING_SCRIPTS = frozenset({"CYRILLIC", "DEVANAGARI", "GLAGOLITIC", "GRANTHA", "GREEK", "LATIN"})
"""Marks named COMBINING that belong to a script, by their name's second word (COMBINING CYRILLIC TITLO)."""
_OVERLAY = 1
"""The canonical combining class of marks drawn through their letter (U+0334..U+0338, U+20D2, ...)."""
_DOT_ABOVE = "\u0307"
_DOTTED = frozenset("ijıȷ")
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_COMBINING_CATEGORIES = frozenset({"Mn", "Mc", "Me"})
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt), plus U+2800 BRAILLE PATTERN BLANK.
_BLANK_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_SPACE_RUN = "  "
_BLANK = frozenset(chr(c) for start, end in _BLANK_RANGES for c in range(start, end + 1))


def parse_memo(value: object) -> str | None:
    """A memo is optional: `None` or blank means no memo; otherwise trimmed, printable text."""
    if value is None:
        return None
    text = _printable_text(value, "memo", MAX_MEMO_LENGTH, ErrorCode.INVALID_MEMO)
    return text or None


def parse_owner(value: object) -> str:
    """An owner name is required, trimmed, printable text, held to a principal's script rule (`_one_script`):
    every question names an account by its owner, the part an approver recognises, so "Bеn Franklin" (a Cyrillic
    е) must not pass for Ben Franklin's account."""
    text = _printable_text(value, "owner", MAX_OWNER_LENGTH, ErrorCode.INVALID_OWNER)
    if not text:
        raise LedgerError(ErrorCode.INVALID_OWNER, "owner must not be empty.", field="owner")
    if not (text.isascii() or _one_script(text)):
        raise LedgerError(ErrorCode.INVALID_OWNER, f"owner must be a name {_SCRIPT_RULE}.", field="owner")
    return text


def is_principal_name(value: object) -> TypeGuard[str]:
    """Whether `value` may name a caller: 1 to `MAX_PRINCIPAL_LENGTH` characters of visible text by this
    module's rule, without surrounding spaces, its letters of one script and in form NFKC. Every approval
    question prints its caller ("Requested by: ..."), so a name must not pass for the bank's lines, nor for
    another caller's name, whose grants and totals it would not have ("аlice" with a Cyrillic а, "ａlice" in
    full width); refused, never trimmed or folded ("carol " is not carol)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_PRINCIPAL_LENGTH
        and value == value.strip()
        and invisible(value) is None
        and (value.isascii() or _one_script(value))
    )


def _one_script(name: str) -> bool:
    """Whether `name` is NFKC (no compatibility forms: full width, mathematical letters, ligatures), draws no
    letter as another with a mark (`_disguised`), and its letters, digits and marks are of one script or of one
    of `_SCRIPT_MIXES` (`_script`)."""
    if unicodedata.normalize("NFKC", name) != name or _disguised(name):
        return False
    scripts = {script for script in map(_script, name) if script is not None}
    return len(scripts) <= 1 or any(scripts <= mix for mix in _SCRIPT_MIXES)


def _script(ch: str) -> str | None:
    """The script `ch` ties a name to, or None for a character any script may use (ASCII digits, punctuation,
    symbols, modifier letters, and accents named COMBINING ..., which take their letter's). A letter, digit or
    mark is of the script that begins its Unicode name (CJK ideographs are Han): enough to tell scripts apart
    without a script table. Digits and marks count as TR39 counts them: an Arabic-Indic one after "alice" reads
    as "alice1", a Cyrillic titlo or an Arabic fatha on a Latin letter makes a Latin-looking name of two scripts."""
    category = unicodedata.category(ch)
    if category not in _LETTER_CATEGORIES and category != "Nd" and category[0] != "M":
        return None
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    words = unicodedata.name(ch, "?").split(" ")
    if words[0] == "COMBINING":
        return words[1] if len(words) > 1 and words[1] in _COMBINING_SCRIPTS else None
    return _SCRIPT_ALIASES.get(words[0], words[0])


def _disguised(name: str) -> bool:
    """Whether a mark in `name` draws its letter as another letter: one drawn through it (canonical combining
    class 1, overlay: "bjo̸rn" reads as bjørn), or a dot above on i or j, hidden in its own dot or turning a
    dotless ı into an i ("alı̇ce" reads as alice). NFKC folds neither."""
    return any(unicodedata.combining(ch) == _OVERLAY for ch in name) or any(
        before in _DOTTED and ch == _DOT_ABOVE for before, ch in pairwise(name)
    )


def _printable_text(value: object, field: str, max_length: int, code: ErrorCode) -> str:
    if not isinstance(value, str):
        raise LedgerError(code, f"{field} must be text.", field=field)
    text = value.strip()
    if len(text) > max_length:
        raise LedgerError(code, f"{field} must be at most {max_length} characters.", field=field)
    problem = invisible(text)
    if problem is not None:
        raise LedgerError(code, f"{field} {problem}", field=field)
    return text


def invisible(text: str) -> str | None:
    """What keeps `text` from being plain visible text under the module's rule (a sentence naming the first
    character at fault by its code point, as it cannot be seen), or None. The one rule for every text bankgate
    shows someone other than its author: memos, owners, principals, desk notes (`desk.decisions`)."""
    if not (text.isascii() and text.isprintable()):  # else U+0020..U+007E: no control, blank or combining character
        unprintable = next((ch for ch in text if unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES), None)
        if unprintable is not None:
            return f"contains {_code_point(unprintable)}, a control or invisible formatting character."
        blank = next((ch for ch in text if ch in _BLANK or (ch != " " and unicodedata.category(ch) == "Zs")), None)
        if blank is not None:
            return f"contains {_code_point(blank)}, which renders as blank; only the plain space may separate words."
        if _longest_mark_run(text) > MAX_COMBINING_MARKS:
            return f"stacks more than {MAX_COMBINING_MARKS} combining marks on one character."
    if _SPACE_RUN in text:
        return "contains spaces in a row; separate words with a single space."
    return None


def _code_point(ch: str) -> str:
    """`ch` as U+XXXX and its Unicode name, if it has one (controls have none)."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def _longest_mark_run(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if unicodedata.category(ch) in _COMBINING_CATEGORIES else 0
        longest = max(longest, run)
    return longest


def shown(text: str) -> str:
    """`text` as a terminal may print it: every character that is not printable (controls, line breaks, bidi
    and other format characters, blanks but the plain space) as its Python escape, e.g. `\\x1b`, `\\u202e`.
    For what the command line prints from the database, which may have been edited behind bankgate's back."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
