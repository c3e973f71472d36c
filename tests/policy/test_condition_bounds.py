"""A condition the CEL engine cannot evaluate safely is refused when the policy loads, naming its rule
and the limit, before the engine compiles or evaluates it (`policy.cel_bounds`).

The engine recurses once per operation of a chain: on an 8 MB stack a chain of ~12,500 `+`, `*`,
comparisons or `.method()` calls killed the whole process (SIGSEGV) when evaluated, 15,000-22,000 when
compiled; a syntax error past column 65,535 raised a Rust panic no `except Exception` catches. Chains
of `&&`/`||`, lists, maps and string literals showed no limit up to 262,144 (10 million characters)."""

from pathlib import Path

import pytest

from mcp_server.tools import TOOL_ARGUMENTS
from policy.cel_bounds import MAX_DEPTH, MAX_LENGTH
from policy.facts import CallFacts
from policy.loader import PolicyError, parse_policy
from policy.outcome import Outcome
from tests.server.cli_process import run_cli

RULE = "[tools.transfer_funds]\ndefault = 'allow'\n[[tools.transfer_funds.rules]]\nname = 'long'\nwhen = '''{}'''\n"
POLICY = RULE + "outcome = 'deny'\nreason = 'r'\n"


def chain(operator: str, term: str, terms: int) -> str:
    return f" {operator} ".join([term] * terms)


@pytest.mark.parametrize("command", [("policy", "check"), ("serve", "--policy")], ids=["check", "serve"])
def test_a_chain_that_crashed_the_engine_is_refused_naming_its_rule(tmp_path: Path, command: tuple[str, str]) -> None:
    """16,000 products: the process died of SIGSEGV (exit -11) in `policy check`, and at `serve`'s start.
    (On an 8 MB stack no chain within `MAX_LENGTH` reaches the crash: the length is what is refused.)"""
    policy = tmp_path / "long.toml"
    policy.write_text(POLICY.format(chain("*", "amount_minor", 16_000) + " > 1"), encoding="utf-8")
    done = run_cli(tmp_path, *command, str(policy))
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    refused = f"{policy}:5: tools.transfer_funds.rules[0].when: is 240,001 characters long; the limit is 20,000"
    assert refused in done.stderr


OVER = MAX_DEPTH + 1
TOO_DEEP = {  # each exactly OVER operations deep
    "sum": chain("+", "amount_minor", OVER + 1),
    "difference": chain("-", "amount_minor", OVER) + " > 1",
    "product": chain("*", "1", OVER) + " > 1",
    "quotients": chain("/", "amount_minor", OVER) + " > 1",
    "remainders": chain("%", "amount_minor", OVER) + " > 1",
    "equalities": chain("==", "amount_minor", OVER + 1),
    "orderings": chain("<", "amount_minor", OVER + 1),
    "in": "amount_minor" + " in [true]" * (OVER - 1),  # a list is an operation too
    "concatenation": chain("+", "principal", OVER) + " == 'x'",
    "fields": "args" + ".memo" * (OVER - 1) + " == 'x'",
    "indexes": "args" + "['memo']" * (OVER - 1) + " == 'x'",
    "method calls": "principal" + ".lowerAscii()" * (OVER - 1) + " == 'x'",
    "inside a conjunction": chain("&&", "true", 1023) + " && " + chain("+", "1", OVER - 10) + " > 1",  # 1,024 terms: 10
}


@pytest.mark.parametrize("when", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_a_chain_past_the_bound_is_refused_before_the_engine_sees_it(when: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(POLICY.format(when), source="p.toml")
    says = f"p.toml:5: tools.transfer_funds.rules[0].when: is {OVER} operations deep; the limit is {MAX_DEPTH} ("
    assert says in str(refused.value)


def test_a_chain_too_deeply_nested_to_read_is_bounded_by_its_operators() -> None:
    """Brackets 45 deep are past what `policy.cel_syntax` reads: each operator counts as a level."""
    when = "(" * 45 + chain("+", "amount_minor", MAX_DEPTH) + " > 1" + ")" * 45
    with pytest.raises(PolicyError, match=rf"is {MAX_DEPTH + 45} operations deep; the limit is {MAX_DEPTH} \("):
        parse_policy(POLICY.format(when), source="p.toml")
    assert parse_policy(POLICY.format("(" * 45 + "amount_minor > 1" + ")" * 45), source="p.toml")


ALLOWLIST = "[" + ", ".join(f"'GB-{i:04d}-ACC-{i:03d}'" for i in range(300)) + "]"


def test_a_typo_beside_a_long_allowlist_is_named_as_the_engine_reads_it() -> None:
    """A condition this parser cannot read (here a Python `and`) was bounded by every operator character, those
    inside its string literals too: 300 account ids of three dashes each made it '907 operations deep', hiding
    the typo. A literal is no operation: the engine names the typo."""
    when = f"!(to_account.id in {ALLOWLIST}) and amount_minor > minor(1000)"
    with pytest.raises(PolicyError) as refused:
        parse_policy(POLICY.format(when), source="p.toml")
    assert "operations deep" not in str(refused.value)
    assert "p.toml:5: tools.transfer_funds.rules[0].when: Failed to parse expression" in str(refused.value)


def test_operators_after_a_literal_not_told_apart_here_still_count() -> None:
    """Where a literal is not told apart here (an escape), every operator character counts: after `'a\\''` the
    engine reads code, which a scan blind to escapes would take for one more literal."""
    when = r"'a\'' + " + chain("+", "amount_minor", MAX_DEPTH) + " + ' ==="
    with pytest.raises(PolicyError, match=r"operations deep; the limit is"):
        parse_policy(POLICY.format(when), source="p.toml")


def test_the_visibility_condition_is_bounded_too() -> None:
    text = f"[accounts]\nvisible = '''{chain('+', 'principal', OVER)} == \"x\"'''\n" + POLICY.format("true")
    with pytest.raises(PolicyError, match=rf"p.toml:2: accounts.visible: is .* the limit is {MAX_DEPTH}"):
        parse_policy(text, source="p.toml")


def test_a_chain_at_the_bound_loads_and_decides() -> None:
    """`a + a + ... > n`: MAX_DEPTH - 1 additions under one comparison, MAX_DEPTH operations deep."""
    when = chain("+", "amount_minor", MAX_DEPTH) + f" > {MAX_DEPTH * 100}"
    policy = parse_policy(POLICY.format(when), source="p.toml", catalog=TOOL_ARGUMENTS)
    assert policy.decide(CallFacts("transfer_funds", {}, "alice", amount_minor=101)).outcome is Outcome.DENY
    assert policy.decide(CallFacts("transfer_funds", {}, "alice", amount_minor=100)).outcome is Outcome.ALLOW


WIDE = {
    "disjunction": chain("||", "principal == 'x'", 900),
    "conjunction": chain("&&", "amount_minor > 1", 900),
    "in list": "principal in [" + ", ".join(f"'u{i}'" for i in range(2_000)) + "]",
    "map": "principal in {" + ", ".join(f"'u{i}': {i}" for i in range(1_200)) + "}",
    "string": "principal == '" + "x" * (MAX_LENGTH - 20) + "'",
}


@pytest.mark.parametrize("when", WIDE.values(), ids=WIDE.keys())
def test_wide_conditions_load_and_evaluate(when: str) -> None:
    """What the engine evaluates without recursing deeper (a long `||` is balanced) stays allowed."""
    policy = parse_policy(POLICY.format(when), source="p.toml", catalog=TOOL_ARGUMENTS)
    assert policy.decide(CallFacts("transfer_funds", {}, "u7", amount_minor=5)).failure is None


def test_a_condition_longer_than_the_bound_is_refused_before_the_engine_panics() -> None:
    """A syntax error past column 65,535 made the engine panic (`PanicException`, a BaseException that
    `policy check` and `serve` let through as a traceback), instead of naming the rule."""
    when = "principal == '" + "x" * 70_000 + "' &&"
    with pytest.raises(PolicyError) as refused:
        parse_policy(POLICY.format(when), source="p.toml")
    assert f"p.toml:5: tools.transfer_funds.rules[0].when: is 70,018 characters long; the limit is {MAX_LENGTH:,}" in (
        str(refused.value)
    )
