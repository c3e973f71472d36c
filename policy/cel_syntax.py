"""A CEL expression's syntax tree, for `policy check`'s warnings (`policy.lint`) and the scopes of the
names a condition reads (`free_variables`, for `policy.expressions`).

The engine (`common-expression-language`) compiles and evaluates conditions but exposes no syntax
tree, only the names an expression reads, a macro's own variables among them. So this is a parser of
CEL's grammar (cel-spec `doc/langdef.md`), used only to look at a condition the engine has already
compiled: the engine stays the judge of what a condition means and whether it is valid. A condition
this parser cannot read (`CelSyntaxError`) gets no warnings, never an error, and is bound every name
the engine lists. Operators are calls, named as the engine
names them (`_==_`, `_&&_`, `!_`, `_[_]`, `_?_:_`), so one walk covers them all.
"""

import re
from dataclasses import dataclass
from typing import Any


class CelSyntaxError(ValueError):
    """Text this parser cannot read as CEL."""


@dataclass(frozen=True)
class Literal:
    value: Any
    """The decoded value (`None` for `null`, and for a string whose escapes are not decoded here)."""
    kind: str
    """int, uint, double, string, bytes, bool or null."""


@dataclass(frozen=True)
class Ident:
    name: str


@dataclass(frozen=True)
class Select:
    operand: "Node"
    field: str


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple["Node", ...]
    target: "Node | None" = None
    """The receiver of a method call (`x.size()`, `list.exists(v, ...)`)."""


@dataclass(frozen=True)
class Collection:
    kind: str
    """list, map or message (a message's first item is the type name as a string literal)."""
    items: tuple["Node", ...]
    """A list's elements; a map's (or message's) keys and values, alternating."""


Node = Literal | Ident | Select | Call | Collection

MAX_NESTING = 40
"""The deepest bracketing (or `c ? x : ...` chain) read: each level costs the parser about ten frames."""
MAX_HEIGHT = 200
"""The tallest tree `parse` gives (`a + a + ...` 200 long, `!!...!x` 200 deep): a taller one (up to
`policy.cel_bounds.MAX_DEPTH`) is refused here, so no walk of a tree (`policy.lint`'s recurse) nears
Python's recursion limit, and none costs more than its height times its size."""

RELATIONS = {"<": "_<_", "<=": "_<=_", ">": "_>_", ">=": "_>=_", "==": "_==_", "!=": "_!=_", "in": "@in"}
COMPARISONS = frozenset(RELATIONS.values()) - {"@in"}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>(?:[bB]?[rR]|[rR][bB])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n\r]*'|"[^"\n\r]*")
      | [bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^\\'\n\r])*'|"(?:\\.|[^\\"\n\r])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\|\||&&|<=|>=|==|!=|[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = {"true": True, "false": False, "null": None}
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"'}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def parse(source: str) -> Node:
    """The syntax tree of `source`, at most `MAX_HEIGHT` tall; `CelSyntaxError` if it is not CEL this parser reads."""
    node = read(source)
    height, level = 0, [node]
    while level:
        height, level = height + 1, [child for parent in level for child in children(parent)]
    if height > MAX_HEIGHT:
        raise CelSyntaxError(f"more than {MAX_HEIGHT} operations deep")
    return node


def read(source: str) -> Node:
    """The syntax tree of `source`, however long its chains (each is read in a loop, not by recursion), so
    its depth can be measured (`policy.cel_bounds`); `CelSyntaxError` if it is not CEL this parser reads."""
    parser = _Parser(_tokens(source))
    node = parser.expr()
    if parser.peek() is not None:
        raise CelSyntaxError(f"unexpected {parser.peek()!r}")
    return node


def children(node: Node) -> tuple[Node, ...]:
    """The nodes directly under `node` (a method call's receiver last)."""
    if isinstance(node, Select):
        return (node.operand,)
    if isinstance(node, Call):
        return (*node.args, *((node.target,) if node.target is not None else ()))
    if isinstance(node, Collection):
        return node.items
    return ()


MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
"""CEL's comprehension macros: `list.exists(v, body)` binds its own `v` over `body` (`map` takes one or two
bodies: `map(v, transform)`, `map(v, filter, transform)`), hiding any variable of that name there."""


def free_variables(node: Node) -> frozenset[str]:
    """The names `node` reads from outside: every identifier but a macro's own variable within its bodies."""
    free: set[str] = set()
    pending: list[tuple[Node, frozenset[str]]] = [(node, frozenset())]
    while pending:
        node, bound = pending.pop()
        if isinstance(node, Ident):
            if node.name not in bound:
                free.add(node.name)
            continue
        if isinstance(node, Call) and node.target is not None and _binds(node):
            variable, *bodies = node.args
            assert isinstance(variable, Ident)
            pending += [(node.target, bound), *((body, bound | {variable.name}) for body in bodies)]
            continue
        pending += [(child, bound) for child in children(node)]
    return frozenset(free)


def _binds(node: Call) -> bool:
    """Whether the engine expands `node` as a macro binding its first argument (no other arity is one)."""
    arity = (2, 3) if node.function == "map" else (2,)
    return node.function in MACROS and len(node.args) in arity and isinstance(node.args[0], Ident)


def _tokens(source: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise CelSyntaxError(f"cannot read {source[at : at + 10]!r}")
        at = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
    return tokens


class _Parser:
    """Recursive descent over the grammar, one method per production."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0
        """How many expressions the one being read is nested in."""

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, *texts: str) -> str | None:
        """The next token if it is one of `texts` (an operator or keyword), consumed; else None."""
        text = self.peek()
        if text in texts and self.tokens[self.at][0] in ("op", "name"):
            self.at += 1
            return text
        return None

    def need(self, text: str) -> None:
        if self.take(text) is None:
            raise CelSyntaxError(f"expected {text!r}, found {self.peek()!r}")

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CelSyntaxError(f"nested more than {MAX_NESTING} deep")
        node = self.binary(0)
        if self.take("?") is not None:
            yes = self.binary(0)
            self.need(":")
            node = Call("_?_:_", (node, yes, self.expr()))
        self.depth -= 1
        return node

    _LEVELS = (("||",), ("&&",), tuple(RELATIONS), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while (op := self.take(*self._LEVELS[level])) is not None:
            node = Call(RELATIONS.get(op, f"_{op}_"), (node, self.binary(level + 1)))
        return node

    def unary(self) -> Node:
        ops = []
        while (op := self.take("!", "-")) is not None:
            ops.append(op)
        node = self.member()
        for op in reversed(ops):
            if op == "-" and isinstance(node, Literal) and node.kind in ("int", "double"):
                node = Literal(-node.value, node.kind)
            else:
                node = Call(f"{op}_", (node,))
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.take(".") is not None:
                name = self.name()
                node = Call(name, self.items(")"), node) if self.take("(") is not None else Select(node, name)
            elif self.take("[") is not None:
                node = Call("_[_]", (node, self.expr()))
                self.need("]")
            elif self.peek() == "{" and _qualified(node):
                self.need("{")
                node = Collection("message", (Literal(_qualified(node), "string"), *self.entries(fields=True)))
            else:
                return node

    def primary(self) -> Node:
        if self.at >= len(self.tokens):
            raise CelSyntaxError("unexpected end")
        kind, text = self.tokens[self.at]
        if kind == "string":
            self.at += 1
            return _string(text)
        if kind == "number":
            self.at += 1
            return _number(text)
        if kind == "name" and text in _KEYWORDS:
            self.at += 1
            value = _KEYWORDS[text]
            return Literal(value, "null" if value is None else "bool")
        if self.take("(") is not None:
            node = self.expr()
            self.need(")")
            return node
        if self.take("[") is not None:
            return Collection("list", self.items("]"))
        if self.take("{") is not None:
            return Collection("map", self.entries(fields=False))
        self.take(".")  # a leading dot names the root scope: the same variables here
        name = self.name()
        if self.take("(") is not None:
            return Call(name, self.items(")"))
        return Ident(name)

    def name(self) -> str:
        if self.at < len(self.tokens) and self.tokens[self.at][0] == "name":
            self.at += 1
            return self.tokens[self.at - 1][1]
        raise CelSyntaxError(f"expected a name, found {self.peek()!r}")

    def items(self, close: str) -> tuple[Node, ...]:
        """Comma-separated expressions up to `close` (a trailing comma allowed)."""
        items: list[Node] = []
        while self.take(close) is None:
            items.append(self.expr())
            if self.take(",") is None:
                self.need(close)
                break
        return tuple(items)

    def entries(self, *, fields: bool) -> tuple[Node, ...]:
        """`key: value` pairs up to `}`, flattened; a message's keys are field names."""
        items: list[Node] = []
        while self.take("}") is None:
            items.append(Literal(self.name(), "string") if fields else self.expr())
            self.need(":")
            items.append(self.expr())
            if self.take(",") is None:
                self.need("}")
                break
        return tuple(items)


def _qualified(node: Node) -> str | None:
    """`a.b.c` as a message type name, if `node` is only names and dots."""
    fields = []
    while isinstance(node, Select):
        fields.append(node.field)
        node = node.operand
    return ".".join([node.name, *reversed(fields)]) if isinstance(node, Ident) else None


def _number(text: str) -> Literal:
    if text[-1] in "uU":
        return Literal(int(text[:-1], 0), "uint")
    if text.lower().startswith("0x"):
        return Literal(int(text, 16), "int")
    if any(c in text for c in ".eE"):
        return Literal(float(text), "double")
    return Literal(int(text), "int")


def _string(text: str) -> Literal:
    prefix = re.match(r"[rRbB]*", text)
    assert prefix is not None
    flags = prefix.group().lower()
    body = text[len(flags) :]
    quote = 3 if body[:3] in ("'''", '"""') else 1
    body = body[quote:-quote]
    kind = "bytes" if "b" in flags else "string"
    if "r" in flags or "\\" not in body:
        return Literal(body, kind)
    try:
        return Literal(_ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], body), kind)
    except KeyError:  # \x, \u, octal: not decoded here, so the value is not known
        return Literal(None, kind)
