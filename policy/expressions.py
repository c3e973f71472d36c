"""CEL conditions: compiled once when the policy loads, evaluated per call.

CEL (the language of Kubernetes admission, Envoy and agentgateway) is evaluated by the
`common-expression-language` package; nothing here parses expressions itself.
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from policy.cel_engine import cel
from policy.facts import VARIABLES, CallFacts


class ExpressionError(ValueError):
    """A condition that does not compile, names an unknown variable, or does not yield a boolean."""


@dataclass(frozen=True)
class Condition:
    """A compiled CEL condition with the source it came from."""

    source: str
    program: Any
    variables: frozenset[str]
    """The variables the condition reads: only these are bound when it is evaluated."""

    @classmethod
    def compile(cls, source: str) -> "Condition":
        try:
            program = cel.compile(source)
        except ValueError as exc:
            raise ExpressionError(str(exc)) from None
        names = frozenset(program.variables())
        unknown = sorted(names - VARIABLES)
        if unknown:
            raise ExpressionError(f"unknown variable {', '.join(unknown)} (known: {', '.join(sorted(VARIABLES))})")
        return cls(source, program, names)

    def holds(self, facts: CallFacts) -> bool:
        """True when the condition is true for `facts`; raises `ExpressionError` on any failure."""
        context = cel.Context()
        context.update(facts.variables(self.variables))
        context.add_function("minor", _minor_units(facts.minor_exponent))
        try:
            value = self.program.execute(context)
        except Exception as exc:  # the CEL runtime raises several types; all mean "cannot decide"
            raise ExpressionError(f"{self.source!r} failed: {exc}") from None
        if not isinstance(value, bool):
            raise ExpressionError(f"{self.source!r} gave {type(value).__name__}, not a boolean")
        return value


def _minor_units(exponent: int) -> Any:
    """`minor(1000)` / `minor("1000.50")`: major units of the call's currency, exactly, in minor units."""

    def minor(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("minor() takes an int or a decimal string, e.g. minor(1000) or minor('12.50')")
        try:
            scaled = Decimal(value).scaleb(exponent)
        except InvalidOperation:
            raise ValueError(f"minor() cannot read {value!r} as a decimal") from None
        if scaled != scaled.to_integral_value():
            raise ValueError(f"minor({value!r}) is finer than the currency's minor unit")
        return int(scaled)

    return minor
