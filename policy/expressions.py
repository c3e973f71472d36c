"""CEL conditions: compiled once when the policy loads, evaluated per call.

CEL (the language of Kubernetes admission, Envoy and agentgateway) is evaluated by the
`common-expression-language` package, the judge of what a condition means. Two looks at a
condition's text only narrow what is bound for it, erring towards binding more: its syntax tree
(`policy.cel_syntax`) tells which of the names the engine lists a macro binds itself (`_read`), and
`_fields_read` which fields of a map are read.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

from policy.cel_bounds import beyond_bounds
from policy.cel_engine import cel
from policy.cel_syntax import CelSyntaxError, free_variables, parse
from policy.facts import VARIABLES, CallFacts, binder


class ExpressionError(ValueError):
    """A condition that does not compile, names an unknown variable, or does not yield a boolean."""


@dataclass(frozen=True)
class Condition:
    """A compiled CEL condition with the source it came from."""

    source: str
    program: Any
    variables: frozenset[str]
    """The variables the condition reads: only these are bound when it is evaluated."""
    fields: Mapping[str, frozenset[str]]
    """For a map variable read only as `name.field`, the fields it reads: only these are bound.
    Converting a value into CEL costs about a microsecond per string, list or map (an account
    is ~12 µs whole, ~4 µs as just `access`), and a condition is evaluated several times per call."""
    calls_minor: bool = True
    """Whether the source names `minor` (read off the text, so true for any mention): only then is
    the `minor()` function made and bound for an evaluation."""
    _binders: tuple[tuple[str, Callable[[CallFacts], Any]], ...] = field(init=False, repr=False, compare=False)
    """Each variable read, with what binds it (`policy.facts.binder`, the `fields` read cut in): made once."""

    def __post_init__(self) -> None:
        binders = tuple((name, binder(name, self.fields.get(name))) for name in sorted(self.variables))
        object.__setattr__(self, "_binders", binders)

    @classmethod
    def compile(cls, source: str) -> "Condition":
        """`source` compiled; `ExpressionError` if it is not a condition, or too large for the engine to be
        trusted with (`policy.cel_bounds`: a deep chain would crash the process, not raise)."""
        too_large = beyond_bounds(source)
        if too_large is not None:
            raise ExpressionError(too_large)
        try:
            program = cel.compile(source)
        except ValueError as exc:
            raise ExpressionError(str(exc)) from None
        names = _read(source, frozenset(program.variables()))
        unknown = sorted(names - VARIABLES)
        if unknown:
            raise ExpressionError(f"unknown variable {', '.join(unknown)} (known: {', '.join(sorted(VARIABLES))})")
        return cls(source, program, names, _fields_read(source, names), _MINOR.search(source) is not None)

    def holds(self, facts: CallFacts) -> bool:
        """True when the condition is true for `facts`; raises `ExpressionError` on any failure."""
        context = cel.Context()
        context.update({name: bind(facts) for name, bind in self._binders})
        if self.calls_minor:
            context.add_function("minor", _minor_units(facts.minor_exponent))
        try:
            value = self.program.execute(context)
        except Exception as exc:  # the CEL runtime raises several types; all mean "cannot decide"
            raise ExpressionError(f"{self.source!r} failed: {exc}") from None
        if type(value) is not bool:  # not `isinstance`: a call (bool has no subclasses), on every evaluation
            raise ExpressionError(f"{self.source!r} gave {type(value).__name__}, not a boolean")
        return value


def _fields_read(source: str, names: frozenset[str]) -> dict[str, frozenset[str]]:
    """Each variable of `names` that `source` names only as `name.field`, with those fields.

    Read off the text, conservatively: a variable named in any other way anywhere (alone, indexed,
    called, in `name.?field`, even inside a string literal or as another map's field) is left out,
    so it is bound whole. A field named only inside a literal is bound too, which costs nothing but
    its conversion. So a condition never sees less of a variable than it could read, and evaluates
    exactly as if the variable were bound whole."""
    fields: dict[str, frozenset[str]] = {}
    for name in names:
        read: set[str] = set()
        for mention in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", source):
            member = _MEMBER.match(source, mention.end())
            if member is None:
                break
            read.add(member.group(1))
        else:
            fields[name] = frozenset(read)
    return fields


_MEMBER = re.compile(r"\s*\.\s*([A-Za-z_]\w*)\b(?!\s*\()")
"""`.field`, not a method call (`.size()`, or a macro such as `.all(k, …)`, which reads every key)."""


def _read(source: str, listed: frozenset[str]) -> frozenset[str]:
    """The variables of `listed` (the engine's names for `source`) that `source` reads from the call.

    The engine lists a comprehension macro's own variable (`account` in `[from_account, to_account]
    .exists(account, ...)`) with the rest, so where the syntax tree can be read, a name counts only where
    no macro around it binds it (`cel_syntax.free_variables`): a macro's variable named like a fact neither
    stands for that fact (an account the tool lacks, the day's total and its turn) nor is unknown. Where it
    cannot be read, the engine's list, less any unknown name the text uses as a macro's variable (such a
    name read outside its macro is unbound, and fails to evaluate)."""
    try:
        return listed & free_variables(parse(source))
    except CelSyntaxError:
        return listed - (frozenset(_MACRO_VARIABLE.findall(source)) - VARIABLES)


_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
"""A comprehension macro's variable (`list.exists(r, r == 'owner')`), read off the text."""


_MINOR = re.compile(r"(?<!\w)minor(?!\w)")
"""Any mention of `minor` (not `amount_minor`): a condition that might call the function."""


_INT_DIGITS = 19
"""Digits in the largest of CEL's integers (64-bit, 9,223,372,036,854,775,807)."""
_EXACT = Context(prec=_INT_DIGITS, traps=[InvalidOperation, Overflow, Inexact])
"""Arithmetic that raises rather than rounds: a value of at most 19 whole digits that needs more than 19 digits
has a nonzero digit below its minor unit (the default context would round it to 28 digits, or underflow to 0)."""


def _minor_units(exponent: int) -> Any:
    """`minor(1000)` / `minor("1000.50")`: major units of the call's currency, exactly, in minor units: one of
    CEL's integers, or an error naming what is wrong (never a value rounded, nor a uint or double in its place)."""

    def minor(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("minor() takes an int or a decimal string, e.g. minor(1000) or minor('12.50')")
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"minor() cannot read {value!r} as a decimal") from None
        if not amount.is_finite():
            raise ValueError(f"minor({value!r}) is not a finite number")
        beyond = ValueError(f"minor({value!r}) is beyond the integers a condition computes with (64-bit)")
        if amount and amount.adjusted() + exponent >= _INT_DIGITS:
            raise beyond
        try:
            scaled = amount.scaleb(exponent, _EXACT)
        except Inexact:
            scaled = None
        if scaled is None or scaled != scaled.to_integral_value():
            raise ValueError(f"minor({value!r}) is finer than the currency's minor unit")
        if not -(2**63) <= scaled < 2**63:
            raise beyond
        return int(scaled)

    return minor
