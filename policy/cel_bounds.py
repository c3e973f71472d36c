"""How large a condition the CEL engine is trusted with, checked before the engine compiles it.

The engine (`common-expression-language` 0.10, the Rust `cel` 0.14.5) recurses once per operation
nested in another, and a Rust stack overflow kills the whole process (SIGSEGV), which no `except`
can catch: `policy check` and the server died at the first look at such a condition. Measured
(a process per try) on an 8 MB stack, the main thread's and, under glibc with the usual `ulimit -s`,
each worker thread's: a chain of ~12,500 `+`, `-`, `*`, `/`, `%`, comparisons, `in`, `.field`,
`[index]` or `.method()` crashed evaluation, of 15,000 to 22,000 compilation; on a 1 MB stack
~1,550, on 256 KB ~380. Chains of `&&` and `||` are balanced (none crashed up to 262,144 terms), and
no limit showed up to 262,144 on negations, list and map literals and `in` lists, nor on string
literals of ten million characters. The engine itself refuses brackets nested 96 deep; and a syntax
error past column 65,535 makes it panic (`PanicException`, a `BaseException`).
"""

import re

from policy.cel_syntax import Call, CelSyntaxError, Ident, Literal, Node, children, read

MAX_DEPTH = 500
"""Operations nested in one another (`a + b > c` is 2): 25 times under the crash on 8 MB, under it
even on a 512 KB stack. A sum or list of names that long belongs in a list literal (`x in [...]`)."""
MAX_LENGTH = 20_000
"""Characters in a condition: under a third of the column whose syntax error panics, and cheap to read."""

_BALANCED = frozenset({"_&&_", "_||_"})
_OPERATOR_CHARACTERS = frozenset(".[({+-*/%<>=!?")
_IN = re.compile(r"\bin\b")
_LITERAL = re.compile(r"'[^'\n\r]*'" + r'|"[^"\n\r]*"')
"""A string literal, as the engine reads it in text holding none of `_UNSURE` (a comment's quotes closed on
their line stay in the comment)."""
_UNSURE = ("\\", "'''", '"""')


def beyond_bounds(source: str) -> str | None:
    """Why the engine cannot be trusted with `source` (what is too large, and the limit), or None."""
    if len(source) > MAX_LENGTH:
        return f"is {len(source):,} characters long; the limit is {MAX_LENGTH:,}"
    try:
        deep, counted = _depth(read(source)), ""
    except CelSyntaxError:  # nested too deep to be read here, or not CEL: bounded by its operators
        deep, counted = _operators(source), ", counted on its operators as it cannot be read here"
    if deep <= MAX_DEPTH:
        return None
    return (
        f"is {deep:,} operations deep; the limit is {MAX_DEPTH} (a longer chain of arithmetic, comparisons,"
        f" `.field`, `[index]` or calls can crash the CEL engine, and the server with it{counted})"
    )


def _depth(node: Node) -> int:
    """How many operations the engine nests in one another for `node` (a name or literal is 0). Walked
    without recursion: `node` may be thousands deep."""
    depths: dict[int, int] = {}
    pending: list[tuple[Node, bool]] = [(node, False)]
    while pending:
        current, ready = pending.pop()
        operands, levels = _operands(current)
        if ready:
            depths[id(current)] = levels + max((depths[id(o)] for o in operands), default=0)
        else:
            pending += [(current, True), *((operand, False) for operand in operands)]
    return depths[id(node)]


def _operands(node: Node) -> tuple[tuple[Node, ...], int]:
    """`node`'s operands and how many levels it adds above them: a run of `&&` (or of `||`) of n terms,
    flattened, as the balanced tree the engine builds of it, ceil(log2 n) deep."""
    if isinstance(node, Literal | Ident):
        return (), 0
    if not (isinstance(node, Call) and node.function in _BALANCED):
        return children(node), 1
    terms: list[Node] = []
    run: list[Node] = [node]
    while run:
        part = run.pop()
        if isinstance(part, Call) and part.function == node.function:
            run += part.args
        else:
            terms.append(part)
    return tuple(terms), (len(terms) - 1).bit_length()


def _operators(source: str) -> int:
    """An upper bound on the depth of text that cannot be read: every level needs an operator, a bracket or
    `in` (`==` counted twice: never less than the depth). A string literal is no operation, so an allowlist
    of ids such as `'GB-0001'` does not hide a typo beside it behind a false depth; its text is left out only
    where every literal is told apart as the engine tells it (no escape, no triple quote, each quote closed
    on its line), else everything counts."""
    code = _LITERAL.sub(" ", source)
    if any(unsure in source for unsure in _UNSURE) or any(quote in code for quote in "'\""):
        code = source
    return sum(c in _OPERATOR_CHARACTERS for c in code) + len(_IN.findall(code))
