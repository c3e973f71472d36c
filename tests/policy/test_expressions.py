"""A condition binds only the fields of a map it reads as `name.field`, and evaluates exactly as if
every variable were bound whole."""

import pytest

from policy.expressions import Condition, ExpressionError, _fields_read
from policy.facts import AccountFacts, CallFacts

FACTS = CallFacts(
    "transfer_funds",
    {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "12.50", "memo": "rent"},
    "alice",
    ("teller",),
    amount_minor=1250,
    accounts={
        "from_account": AccountFacts("ACC-001", "alice", "open", "USD", 10_000, ("owner",)),
        "to_account": AccountFacts("ACC-002", "bob", "open", "USD", 0),
    },
)


@pytest.mark.parametrize(
    ("source", "names", "expected"),
    [
        ("'owner' in account.access", {"account"}, {"account": {"access"}}),
        ("account . owner == 'a' && account.access.size() > 0", {"account"}, {"account": {"owner", "access"}}),
        ("account.\nowner == 'a'", {"account"}, {"account": {"owner"}}),
        ("has(account.owner)", {"account"}, {"account": {"owner"}}),
        ("my_account.x == 1 && account.id == 'a'", {"account"}, {"account": {"id"}}),
        ("account.owner == 'x' || args.account == 'y'", {"account", "args"}, {"args": {"account"}}),
        # Bound whole: named alone, indexed, called, optionally selected, or inside a literal.
        ("size(account) > 2", {"account"}, {}),
        ("account['owner'] == 'x'", {"account"}, {}),
        ("account.all(k, k != 'x')", {"account"}, {}),
        ("account.size() > 2", {"account"}, {}),
        ("account.?owner.orValue('') == ''", {"account"}, {}),
        ("\"account\" == 'x' && account.id == 'x'", {"account"}, {}),
        ("'operator' in roles", {"roles"}, {}),
    ],
)
def test_fields_read_off_the_text(source: str, names: set[str], expected: dict[str, set[str]]) -> None:
    assert _fields_read(source, frozenset(names)) == {name: frozenset(read) for name, read in expected.items()}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'owner' in from_account.access && to_account.owner == 'bob'", True),
        ("size(from_account) == 6", True),  # a map read whole is bound whole
        ("from_account['balance_minor'] == 10000 && from_account.status == 'open'", True),
        ("has(to_account.owner) && !has(to_account.missing)", True),
        ("size(args) == 4 && args.memo == 'rent'", True),
        ("args.memo == 'rent' && to_account.access.size() == 0", True),
        ("from_account.balance_minor - amount_minor == 8750", True),
        ("from_account.owner == 'bob'", False),
    ],
)
def test_a_projected_condition_evaluates_as_bound_whole(source: str, expected: bool) -> None:
    condition = Condition.compile(source)
    assert condition.holds(FACTS) is expected
    whole = Condition(source, condition.program, condition.variables, {})
    assert whole.holds(FACTS) is expected


def test_a_missing_field_still_fails_to_evaluate() -> None:
    """A field no account has is an error with or without the projection (the gate then fails closed)."""
    condition = Condition.compile("from_account.nickname == 'x'")
    assert condition.fields == {"from_account": frozenset({"nickname"})}
    with pytest.raises(ValueError, match="nickname"):
        condition.holds(FACTS)


@pytest.mark.parametrize(
    ("source", "calls_minor", "expected"),
    [
        ("amount_minor > minor(12)", True, True),
        ("amount_minor > minor('12.50')", True, False),
        ("amount_minor > 1000 && from_account.balance_minor > 0", False, True),
    ],
)
def test_minor_is_bound_when_named(source: str, calls_minor: bool, expected: bool) -> None:
    """`minor()` is made only for a condition that names it, and evaluates the same as when always bound."""
    condition = Condition.compile(source)
    assert condition.calls_minor is calls_minor
    assert condition.holds(FACTS) is expected
    assert Condition(source, condition.program, condition.variables, condition.fields).holds(FACTS) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from_account.access.exists(r, r == 'owner')", True),
        ("roles.all(role, role != 'operator') && to_account.access.exists_one(r, r == 'owner')", False),
        ("args.filter(k, k.startsWith('m')).size() == 1", True),
        ("[from_account, to_account].map(a, a.balance_minor).exists(b, b > amount_minor)", True),
    ],
)
def test_a_macros_own_variables_are_not_unknown(source: str, expected: bool) -> None:
    """The engine lists a comprehension's variables among the expression's; they are the macro's, not the call's."""
    condition = Condition.compile(source)
    assert condition.holds(FACTS) is expected


ALL_READ = {"amount_minor", "moved_today_minor"}


@pytest.mark.parametrize(
    ("source", "variables"),
    [
        ("[from_account].exists(moved_today_minor, moved_today_minor.balance_minor > 0)", {"from_account"}),
        ("[amount_minor].map(account, account + 1).exists(b, b > moved_today_minor)", ALL_READ),
        ("[1].exists(account, account > 0) || account.id == 'x'", {"account"}),
        ("[[1]].exists(x, x.exists(x, x > 0)) && [2].map(now, now > 1, now).size() == 0", set()),
        ("roles.exists(r, [r].all(principal, principal != r))", {"roles"}),
    ],
)
def test_the_variables_read_are_those_no_macro_binds(source: str, variables: set[str]) -> None:
    """A fact is bound (and gathered: the day's total takes the principal's turn) only if read outside any macro
    naming its own variable so."""
    assert Condition.compile(source).variables == variables


def test_a_macro_variable_used_outside_its_macro_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown variable r"):
        Condition.compile("[1].exists(r, r > 0) && r == 1")
    unread = Condition.compile("(" * 45 + "[1].exists(r, r > 0) && r == 1" + ")" * 45)  # too deep to read its scopes
    with pytest.raises(ValueError, match="'r'"):
        unread.holds(FACTS)


@pytest.mark.parametrize(
    ("argument", "says"),
    [
        ("'NaN'", "minor('NaN') is not a finite number"),  # was: "is finer than the currency's minor unit"
        ("'-Infinity'", "minor('-Infinity') is not a finite number"),  # was: OverflowError, cannot convert
        ("'1e1000000000'", "minor('1e1000000000') is beyond"),  # was: Overflow: [<class 'decimal.Overflow'>]
        ("'1e400'", "minor('1e400') is beyond"),  # was: Failed to convert Python object of type int to Value
        ("92233720368547759", "minor(92233720368547759) is beyond"),  # was: a uint, silently, in a sum an error
        ("'1000000000000000.00000000000000000000001'", "is finer than the currency's minor unit"),  # was: 10^17
        ("'1e-999999999'", "is finer than the currency's minor unit"),
    ],
)
def test_minor_refuses_what_no_amount_can_be_naming_why(argument: str, says: str) -> None:
    """`minor()` gives an integer of minor units, exactly, or fails naming what is wrong with its argument (the
    rule then fails to evaluate, which `policy check` reports and a call is denied for): never another type, nor
    a value rounded to the 28 digits of Python's decimal arithmetic."""
    with pytest.raises(ExpressionError) as error:
        Condition.compile(f"amount_minor < minor({argument})").holds(FACTS)
    assert says in str(error.value)


@pytest.mark.parametrize(
    ("argument", "minor"),
    [
        ("12", 1200),
        ("'12.50'", 1250),
        ("'-0.01'", -1),
        ("'0'", 0),
        ("'0e999999999'", 0),
        ("92233720368547758", 9223372036854775800),  # the most whole units an integer holds
    ],
)
def test_minor_converts_major_units_exactly(argument: str, minor: int) -> None:
    assert Condition.compile(f"minor({argument}) == {minor}").holds(FACTS)
