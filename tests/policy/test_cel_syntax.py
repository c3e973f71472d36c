"""The syntax tree `policy check`'s warnings are read from: it reads what the engine compiles, as the
engine reads it (the same names, operators grouped by CEL's precedence, literals decoded)."""

import pytest

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


@pytest.mark.parametrize("source", ["1 +", "a..b", "(a", "[1, 2", "a ? b", "'open"])
def test_what_is_not_cel_is_refused(source: str) -> None:
    with pytest.raises(CelSyntaxError):
        parse(source)
