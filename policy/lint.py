"""`policy check`'s warnings: rules that load and run, but cannot mean what their author meant.

Each warning is found on the condition's syntax tree (`policy.cel_syntax`), judged with what the
server binds (`policy.facts`) and, when the server's tools are known, their arguments:

- a read of an argument a call may leave out (`args.memo`), or of an account it may not name
  (`sweep_to`), unguarded: without it the rule fails to evaluate, and a failing rule denies;
- an argument the tool does not have (`args.memmo`): never set;
- a fact compared with a literal of another type or outside the values it takes
  (`amount_minor > 500.5`, `args.amount == '100'`, `'Owner' in account.access`, `account.access == 'owner'`,
  `tool == 'x'`), in a rule
  or in `[accounts] visible` (`visibility_warnings`);
- an `allow` rule in a tool whose default is `allow`: the most restrictive outcome wins, so it
  never changes a decision (not even as an exception to a stricter rule);
- a rule whose own `channel` drops its tool's `desk`: a call it alone matches is approved without a
  signed desk decision.

Rules combine without order (every rule is evaluated, the most restrictive match wins), so no rule
can be shadowed by an earlier one. A warning never stops a policy loading.
"""

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from policy.cel_syntax import (
    COMPARISONS,
    MACROS,
    Call,
    CelSyntaxError,
    Collection,
    Ident,
    Literal,
    Node,
    Select,
    children,
    parse,
)
from policy.channel import Channel
from policy.document import Rule
from policy.facts import ACCOUNT_ARGUMENTS, ACCOUNT_STATUSES, RELATIONS, ROLES, VARIABLES
from policy.outcome import Outcome

Arguments = Mapping[str, bool]
"""A tool's argument names, each with whether a call must carry it."""

_OPERATORS = {"_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=", "_==_": "==", "_!=_": "!="}
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class _Fact:
    """What a rule reads, as far as a comparison with a literal can be judged."""

    name: str
    kind: str
    """minor (an integer of minor units), amount (args.amount: a decimal string), string or list."""
    values: frozenset[str] | None = None
    """Every value it (or, for a list, each element) can take, when known."""
    currency: bool = False


def rule_warnings(source: str, tool: str, arguments: Arguments | None) -> list[str]:
    """What is wrong with the condition `source` of a rule of `tool`; none if it cannot be parsed here."""
    try:
        tree = parse(source)
    except CelSyntaxError:
        return []
    if any(_binds_a_fact(node) for node in _nodes(tree)):
        return []  # facts are told apart here by their names, which the macro's variable takes
    found = list(_comparisons(tree, frozenset({tool})))
    if arguments is not None:
        found += _unknown_arguments(tree, tool, arguments)
        optional = _optional(arguments)
        reads = dict.fromkeys(_unguarded_reads(tree, optional, frozenset()))
        found += [_unguarded(key, tool, optional[key]) for key in reads]
    return found


def visibility_warnings(source: str, tools: Iterable[str]) -> list[str]:
    """What is wrong with the `[accounts] visible` condition `source`, which judges calls of every one of `tools`:
    its comparisons (a typo there widens or narrows who may learn of an account as silently as in a rule)."""
    try:
        tree = parse(source)
    except CelSyntaxError:
        return []
    if any(_binds_a_fact(node) for node in _nodes(tree)):
        return []
    return list(_comparisons(tree, frozenset(tools)))


def _binds_a_fact(node: Node) -> bool:
    """Whether `node` is a macro naming its variable as a fact is named (`roles.exists(tool, tool == 'x')`)."""
    return (
        isinstance(node, Call)
        and node.function in MACROS
        and node.target is not None
        and bool(node.args)
        and isinstance(node.args[0], Ident)
        and node.args[0].name in VARIABLES
    )


def desk_dropped(rule: Rule, tool_channel: Channel) -> str | None:
    """Why `rule`'s own channel may not mean what its tool's says: a rule's channel replaces the tool's for the
    calls it matches, so under a `desk` tool a looser one lets those calls through a form nobody signs."""
    if tool_channel is not Channel.DESK or rule.channel in (None, Channel.DESK):
        return None
    return (
        f"channel '{rule.channel}' replaces the tool's 'desk' for the calls this rule matches: when no desk rule "
        "matches as well, they are approved without a signed desk decision (four eyes); fix: remove this rule's "
        "channel to keep the tool's, or keep it if that is meant"
    )


def default_overlap(rule: Rule, default: Outcome) -> str | None:
    """Why `rule` never changes a decision of a tool whose default is `default`, if it never does (its
    messages would still word one)."""
    if rule.outcome is not Outcome.ALLOW or default is not Outcome.ALLOW or rule.messages:
        return None
    return (
        "never changes a decision: the tool's default is already allow, and when rules match the most "
        "restrictive outcome wins, so an allow rule cannot make an exception to a deny or require_approval "
        "rule either; fix: remove it, or write the exception into the stricter rule's condition "
        "(e.g. !(<this condition>) && ...)"
    )


def _fact(node: Node, tools: frozenset[str]) -> _Fact | None:
    if isinstance(node, Ident):
        if node.name in ("amount_minor", "moved_today_minor"):
            return _Fact(node.name, "minor")
        if node.name == "tool":
            return _Fact("tool", "string", tools)
        if node.name == "currency":
            return _Fact("currency", "string", currency=True)
        if node.name == "principal":
            return _Fact("principal", "string")
        if node.name == "roles":
            return _Fact("roles", "list", frozenset(ROLES))
    if isinstance(node, Call) and node.function == "minor" and node.target is None:
        return _Fact("minor(...)", "minor")
    if isinstance(node, Select) and isinstance(node.operand, Ident):
        owner, field = node.operand.name, node.field
        name = f"{owner}.{field}"
        if owner == "args":
            return _Fact(name, "amount" if field == "amount" else "string")
        if owner in ACCOUNT_ARGUMENTS:
            return {
                "balance_minor": _Fact(name, "minor"),
                "access": _Fact(name, "list", frozenset(RELATIONS)),
                "status": _Fact(name, "string", frozenset(ACCOUNT_STATUSES)),
                "currency": _Fact(name, "string", currency=True),
                "id": _Fact(name, "string"),
                "owner": _Fact(name, "string"),
            }.get(field)
    return None


def _comparisons(tree: Node, tools: frozenset[str]) -> Iterator[str]:
    """A fact compared (`==`, `<`, `in`, ...) with a literal it can never equal, or as the wrong type."""
    for node in _nodes(tree):
        if not isinstance(node, Call) or len(node.args) != 2:
            continue
        left, right = node.args
        if node.function in COMPARISONS:
            op = _OPERATORS[node.function]
            for fact_node, literal, first in ((left, right, True), (right, left, False)):
                fact = _fact(fact_node, tools)
                if fact is not None and isinstance(literal, Literal):
                    around = (f"{fact.name} {op} ", "") if first else ("", f" {op} {fact.name}")
                    yield from _compared(fact, op, literal, around)
        elif node.function == "@in":
            container = _fact(right, tools)
            if container is not None and container.kind == "list" and isinstance(left, Literal):
                yield from _compared(container, "in", left, ("", f" in {container.name}"))
            fact = _fact(left, tools)
            if fact is not None and isinstance(right, Collection) and right.kind == "list":
                for item in right.items:
                    if isinstance(item, Literal):
                        yield from _compared(fact, "in", item, (f"{fact.name} in [..., ", ", ...]"))


def _compared(fact: _Fact, op: str, literal: Literal, around: tuple[str, str]) -> Iterator[str]:
    """What is wrong with comparing `fact` with `literal` by `op`, in the expression `around` the literal
    (the text before and after it), which a fix rewrites with something else in the literal's place."""
    shown = _cel(literal)
    before, after = around
    expression = f"{before}{shown}{after}"
    constant = {"==": "never true", "in": "never true", "!=": "always true"}.get(op)
    outcome = f"is {constant}" if constant else "fails to evaluate, and so denies every call"
    if fact.kind == "minor":
        if literal.kind == "double":
            yield (
                f"{expression}: {fact.name} is an integer count of minor units (cents), so {shown} "
                f"means {shown} minor units, not {shown} in the currency; fix: {before}minor('{shown}'){after}"
            )
        elif literal.kind in ("string", "bytes", "bool", "null"):
            amount = shown if literal.kind == "string" else "'1000'"
            yield (
                f"{expression}: {fact.name} is an integer, {shown} is not a number, so this "
                f"{outcome}; fix: {before}minor({amount}){after}"
            )
    elif fact.kind == "amount" and literal.kind != "null":
        yield (
            f"{expression}: {fact.name} is the amount as text, as the caller wrote it (e.g. '1500.00'), "
            f"so it is compared letter by letter or not at all; fix: compare the number, amount_minor and minor(...)"
        )
    elif fact.kind in ("string", "list") and literal.kind not in ("string", "null"):
        yield f"{expression}: {fact.name} holds text, never {_A[literal.kind]}, so this {outcome}"
    elif fact.kind == "list" and op in ("==", "!=") and literal.kind == "string":
        element = f"{shown} in {fact.name}"
        fix = element if op == "==" else f"!({element})"
        yield f"{expression}: {constant}, as {fact.name} is a list (e.g. [{shown}]), never one text; fix: {fix}"
    elif fact.kind in ("string", "list") and isinstance(literal.value, str) and constant is not None:
        if fact.values is not None and literal.value not in fact.values:
            values = ", ".join(f"'{v}'" for v in sorted(fact.values))
            yield f"{expression}: {constant}, as {fact.name} is only ever {values}"
        elif fact.name == "tool" and fact.values == frozenset({literal.value}):  # a rule's: it sees one tool
            truth = "never true" if constant == "always true" else "always true"
            yield f"{expression}: {truth} in a rule of {literal.value}, which sees no other tool; fix: drop it"
        elif fact.currency and not _CURRENCY.fullmatch(literal.value):
            yield f"{expression}: {constant}, as currencies are ISO 4217 codes in capitals (e.g. 'USD')"


def _unknown_arguments(tree: Node, tool: str, arguments: Arguments) -> Iterator[str]:
    named = dict.fromkeys(field for field, _ in _argument_reads(tree))
    for field in named:
        if field not in arguments:
            yield (
                f"args.{field}: {tool} has no argument {field} (its arguments: {', '.join(arguments)}), so it is "
                f"never set: has(args.{field}) is never true, and reading it fails, denying the call"
            )


def _argument_reads(tree: Node) -> Iterator[tuple[str, bool]]:
    """Each argument a condition names, with whether it reads the value (rather than test its presence)."""
    for node in _nodes(tree):
        field = _argument(node)
        if field is not None:
            yield field, True
        if isinstance(node, Call):
            tested = _tested(node)
            if tested is not None:
                yield tested, False


def _argument(node: Node) -> str | None:
    """`args.f` or `args['f']`: the argument `f` it reads."""
    if isinstance(node, Select) and node.operand == Ident("args"):
        return node.field
    if isinstance(node, Call) and node.function == "_[_]" and node.args[0] == Ident("args"):
        key = node.args[1]
        if isinstance(key, Literal) and isinstance(key.value, str):
            return key.value
    return None


def _tested(node: Call) -> str | None:
    """`has(args.f)` or `'f' in args`: the argument `f` whose presence it tests."""
    if node.function == "has" and len(node.args) == 1 and isinstance(node.args[0], Select):
        return node.args[0].field if node.args[0].operand == Ident("args") else None
    if node.function == "@in" and node.args[1] == Ident("args"):
        key = node.args[0]
        if isinstance(key, Literal) and isinstance(key.value, str):
            return key.value
    return None


def _optional(arguments: Arguments) -> dict[str, tuple[str, str]]:
    """What a call of the tool may lack, with the guards that say it is there and that it is not: `args.f`
    for each optional argument `f`, and the account variable an optional argument names."""
    optional = {f"args.{n}": (f"has(args.{n})", f"!has(args.{n})") for n, required in arguments.items() if not required}
    for role, argument in ACCOUNT_ARGUMENTS.items():
        if argument in arguments and not arguments[argument]:
            optional[role] = (f"{role} != null", f"{role} == null")
    return optional


def _unguarded(key: str, tool: str, guards: tuple[str, str]) -> str:
    if key.startswith("args."):
        what = f"reads {key}, which a call of {tool} may leave out"
    else:
        what = f"reads {key}, which is null when a call of {tool} has no {ACCOUNT_ARGUMENTS[key]}"
    present, absent = guards
    return (
        f"{what}: such a call cannot be evaluated, and a rule that cannot be evaluated denies it; "
        f"fix: guard it: {present} && ... (or {absent} || ...)"
    )


def _unguarded_reads(node: Node, optional: Mapping[str, object], guarded: frozenset[str]) -> Iterator[str]:
    """The keys of `optional` that `node` reads where nothing guarantees they are there.

    CEL's `&&` and `||` absorb an error whichever side it is on (`false && error` is false), so a
    guard on either side of one protects the other; `c ? x : y` guards `x` by `c` and `y` by `!c`."""
    if isinstance(node, Call):
        if node.function in ("_&&_", "_||_"):
            left, right = node.args
            holds = _present_when if node.function == "_&&_" else _present_unless
            yield from _unguarded_reads(left, optional, guarded | holds(right, optional))
            yield from _unguarded_reads(right, optional, guarded | holds(left, optional))
            return
        if node.function == "_?_:_":
            condition, yes, no = node.args
            yield from _unguarded_reads(condition, optional, guarded)
            yield from _unguarded_reads(yes, optional, guarded | _present_when(condition, optional))
            yield from _unguarded_reads(no, optional, guarded | _present_unless(condition, optional))
            return
        if _tested(node) is not None:
            return
        if node.function == "has" and len(node.args) == 1 and isinstance(node.args[0], Select):
            node = node.args[0]  # `has(x.f)` (not of `args`, tested above) reads `x`: on null it fails too
    argument = _argument(node)
    if argument is not None and f"args.{argument}" in optional and f"args.{argument}" not in guarded:
        yield f"args.{argument}"
    if isinstance(node, Select) and isinstance(node.operand, Ident):
        role = node.operand.name
        if role in optional and role not in guarded:
            yield role
    for child in children(node):
        yield from _unguarded_reads(child, optional, guarded)


def _present_when(node: Node, optional: Mapping[str, object]) -> frozenset[str]:
    """The keys of `optional` certainly there when `node` is true."""
    if isinstance(node, Call):
        tested = _tested(node)
        if tested is not None:
            return _with_account(f"args.{tested}", optional)
        if node.function == "_!=_":
            return _null_checked(node, optional)
        if node.function == "_&&_":
            return _present_when(node.args[0], optional) | _present_when(node.args[1], optional)
        if node.function == "!_":
            return _present_unless(node.args[0], optional)
    return frozenset()


def _present_unless(node: Node, optional: Mapping[str, object]) -> frozenset[str]:
    """The keys of `optional` certainly there when `node` is false."""
    if isinstance(node, Call):
        if node.function == "_==_":
            return _null_checked(node, optional)
        if node.function == "_||_":
            return _present_unless(node.args[0], optional) | _present_unless(node.args[1], optional)
        if node.function == "!_":
            return _present_when(node.args[0], optional)
    return frozenset()


def _null_checked(node: Call, optional: Mapping[str, object]) -> frozenset[str]:
    """The account variable `node` compares with null, and the argument naming its account (the call names it
    when the variable is not null)."""
    if Literal(None, "null") not in node.args:
        return frozenset()
    roles = {a.name for a in node.args if isinstance(a, Ident) and a.name in ACCOUNT_ARGUMENTS}
    keys = {*roles, *(f"args.{ACCOUNT_ARGUMENTS[role]}" for role in roles)}
    return frozenset(keys & optional.keys())


def _with_account(key: str, optional: Mapping[str, object]) -> frozenset[str]:
    """`key` and the account variable its argument names (present when the argument is: the call names it)."""
    roles = {role for role, argument in ACCOUNT_ARGUMENTS.items() if key == f"args.{argument}" and role in optional}
    return frozenset({key, *roles})


def _nodes(node: Node) -> Iterator[Node]:
    yield node
    for child in children(node):
        yield from _nodes(child)


_A = {"int": "an int", "uint": "a uint", "double": "a double", "bytes": "bytes", "bool": "a bool"}
"""Each kind of literal but text and null, as a noun."""


def _cel(literal: Literal) -> str:
    if literal.kind in ("string", "bytes"):
        prefix = "b" if literal.kind == "bytes" else ""
        return prefix + repr(literal.value) if literal.value is not None else f"<a {literal.kind}>"
    if literal.kind == "null":
        return "null"
    if literal.kind == "bool":
        return "true" if literal.value else "false"
    return f"{literal.value}{'u' if literal.kind == 'uint' else ''}"
