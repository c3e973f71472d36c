"""The syntax tree `policy check`'s warnings are read from: it reads what the engine compiles, as the
engine reads it (the same names, operators grouped by CEL's precedence, literals decoded). Whatever the
text, it gives a tree or refuses it (`CelSyntaxError`), never anything else: not a Python recursion
error on a long or deeply nested condition, and not a misreading of one it cannot follow."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.cel_engine import cel
from policy.cel_syntax import Call, CelSyntaxError, Collection, Ident, Literal, Node, Select, parse

SOURCES = [
    "!('operator' in roles || 'owner' in account.access || 'viewer' in account.access)",
    "moved_today_minor + amount_minor > minor(20000) && principal == 'capped'",
    "has(args.memo) ? args.memo.startsWith('INV-') : false",
    "now.getHours() < 8 || now.getDayOfWeek() in [0, 6]",
    "from_account.access.exists(r, r == 'owner') && size(roles) > 0",
    "args['memo'].matches(r'^INV-\\d+$') && b'x' != b'y' && -1 < 0x10 && 1u <= 2u && 1e3 > 2.5",
    "{'a': 1, 'b': [true, false, null]}.a == 1 // a comment",
    '"""triple "quoted" text""" != \'\'\'other\'\'\' && "\\n" != "\\t"',
    "google.protobuf.Duration{seconds: 60} != null",
    "amount_minor % 2 == 0 && amount_minor / 100 * 3 - 1 >= minor('12.50')",
]


def names(node: Node) -> set[str]:
    if isinstance(node, Ident):
        return {node.name}
    children: tuple[Node, ...] = ()
    if isinstance(node, Select):
        children = (node.operand,)
    elif isinstance(node, Call):
        children = (*node.args, *((node.target,) if node.target is not None else ()))
    elif isinstance(node, Collection):
        children = node.items
    return set().union(*(names(c) for c in children)) if children else set()


def compiled(source: str) -> set[str] | None:
    """The variables the engine says `source` reads; None if it does not compile."""
    try:
        return set(cel.compile(source).variables())
    except ValueError:
        return None


@pytest.mark.parametrize("source", SOURCES)
def test_it_reads_what_the_engine_compiles_with_the_same_names(source: str) -> None:
    tree = parse(source)
    qualified = {"google"} if "google." in source else set()  # a message type's name, not a variable
    assert names(tree) - qualified == set(cel.compile(source).variables()) - qualified


def test_operators_group_by_cels_precedence() -> None:
    tree = parse("a || b && c == 1 + 2 * 3")
    assert tree == Call(
        "_||_",
        (
            Ident("a"),
            Call(
                "_&&_",
                (
                    Ident("b"),
                    Call(
                        "_==_",
                        (
                            Ident("c"),
                            Call("_+_", (Literal(1, "int"), Call("_*_", (Literal(2, "int"), Literal(3, "int"))))),
                        ),
                    ),
                ),
            ),
        ),
    )
    assert parse("-2.5") == Literal(-2.5, "double") and parse("r'\\d'") == Literal("\\d", "string")
    assert parse("'it\\'s'") == Literal("it's", "string") and parse("'\\u00e9'") == Literal(None, "string")


@pytest.mark.parametrize("source", ["1 +", "a..b", "(a", "[1, 2", "a ? b", "'open", "(" * 3000 + "1" + ")" * 3000])
def test_what_is_not_cel_is_refused(source: str) -> None:
    with pytest.raises(CelSyntaxError):
        parse(source)


_NAMES = st.sampled_from(["a", "args", "amount_minor", "principal", "_x1"])
_STRINGS = st.builds(
    lambda prefix, quote, body: f"{prefix}{quote}{body}{quote}",
    st.sampled_from(["", "r", "R", "b", "B", "rb", "bR"]),
    st.sampled_from(["'", '"', "'''", '"""']),
    st.text(alphabet="a \\'\"\n\r?`u0x{}()", max_size=8),
)
_NUMBERS = st.sampled_from(["0", "7u", "0x1F", "0X1fU", "1e3", "1E-3", "1.5", ".5", "2.5e+2", "18446744073709551615u"])
_ATOMS = st.one_of(_NAMES, _STRINGS, _NUMBERS, st.sampled_from(["true", "false", "null"]))
_OPERATORS = ["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "in", "&&", "||"]


def _composed(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds("{} {} {}".format, inner, st.sampled_from(_OPERATORS), inner),
        st.builds("{}{}".format, st.sampled_from(["!", "-", "!!", "--"]), inner),
        st.builds("({})".format, inner),
        st.builds("{}.{}".format, inner, st.sampled_from(["memo", "size()", "startsWith('x')"])),
        st.builds("{}[{}]".format, inner, inner),
        st.builds(lambda items: f"[{', '.join(items)}]", st.lists(inner, max_size=3)),
        st.builds("{{{}: {}}}".format, inner, inner),
        st.builds("{} ? {} : {}".format, inner, inner, inner),
        st.builds("{}{}".format, inner, st.sampled_from([" // note\n", "\t", "\n"])),
    )


@given(st.recursive(_ATOMS, _composed, max_leaves=12))
def test_it_reads_every_expression_the_engine_compiles_with_its_variables(source: str) -> None:
    """Generated CEL, with every kind of literal (raw, bytes, triple-quoted, escaped strings; hex, unsigned,
    exponent numbers): what the engine compiles is read, naming the variables the engine names."""
    variables = compiled(source)
    if variables is None:
        return
    assert names(parse(source)) == variables


@given(st.text())
def test_any_text_is_read_or_refused(source: str) -> None:
    with contextlib.suppress(CelSyntaxError):
        parse(source)


def test_a_raw_string_ends_at_its_quote_even_after_a_backslash() -> None:
    """In `r'...'` a backslash escapes nothing: read as an escape, the quote after it did not end the
    string, and the rest was read off by one string (here, as a comparison of `amount_minor`)."""
    source = "r'\\' != ' && amount_minor > 1.5 && ' // '"
    assert compiled(source) == set()
    assert parse(source) == Call("_!=_", (Literal("\\", "string"), Literal(" && amount_minor > 1.5 && ", "string")))
    assert parse("args.memo == r'C:\\' || amount_minor > 1") == parse("args.memo == 'C:\\\\' || amount_minor > 1")


def deep(length: int) -> dict[str, str]:
    """Conditions past what this parser reads when `length` > `MAX_HEIGHT`: brackets 95 deep (the engine
    refuses 96), chains `length` long."""
    return {
        "parentheses": "(" * 95 + "amount_minor > 1" + ")" * 95,
        "lists": "[" * 95 + "amount_minor" + "]" * 95 + " != []",
        "ternaries": "amount_minor > 1 ? true : " * 94 + "false",
        "negations": "!" * length + "(amount_minor > 1)",
        "minus signs": "-" * length + "amount_minor > 1",
        "a sum": " + ".join(["amount_minor"] * length) + " > 1",
        "a conjunction": " && ".join(["amount_minor > 1"] * length),
        "indexes": "args" + "['memo']" * length + " == 'x'",
        "fields": "args" + ".memo" * length + " == 'x'",
        "method calls": "principal" + ".lowerAscii()" * length + " == 'x'",
        "a message type": "a" + ".b" * length + "{}",
    }


DEEP = deep(3000)


@pytest.mark.parametrize("source", DEEP.values(), ids=DEEP.keys())
def test_a_deep_or_long_expression_is_read_or_refused(source: str) -> None:
    """The engine compiles any length of chain, and brackets 95 deep: such a condition is read (naming
    what the engine names) or refused, never a RecursionError."""
    assert compiled(source) is not None
    with contextlib.suppress(CelSyntaxError):
        assert names(parse(source)) == compiled(source)
