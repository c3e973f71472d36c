"""Hostile inputs through a real MCP client: arbitrary JSON for every argument, for the
idempotency key, and for the approver's answers, on both protocol revisions.

Properties, checked on every example against the test's own reading of the ledger:
- the server never crashes (the same client still gets a balance afterwards);
- a call whose arguments are invalid changes nothing, and what executes is exactly what
  was asked (accounts, amount to the cent, memo);
- no money moves without an accepted approval: the shipped policy asks for every transfer
  and close, so a change in the books needs a clean yes (`approve` exactly `true`, only
  the form's fields, the account typed back for a close) as the last answer given;
- every refusal is a clear error: a status from the documented set, a snake_case code and
  a message that is neither a stack trace nor an echo of the rejected input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from mcp_server.app import build_server, open_state
from mcp_server.ledger.entitlements import EntitlementAdmin
from mcp_server.settings import Settings
from policy.question import requested_confirmation
from tests.conftest import PROFILE_ENV, examples, select_profile
from tests.drills.support import Books, record, scaled
from tests.ledger.helpers import snapshot
from tests.server.harness import KEY

EXAMPLES = examples(scaled(60, minimum=10))
"""Per protocol revision; derandomised in CI, ten times as many and random as a drill (tests/conftest.py)."""
TOOLS = ("get_account_balance", "transfer_funds", "close_account")
PARAMETERS = {
    "get_account_balance": ("account_id",),
    "transfer_funds": ("from_account", "to_account", "amount", "memo"),
    "close_account": ("account_id", "sweep_to"),
}
STATUSES = {"executed", "rejected", "cancelled", "expired", "denied", "failed"}
ACCOUNT_ID = re.compile(r"ACC-[0-9]{1,12}")
AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")
CODE = re.compile(r"[a-z][a-z_]*")
NOTE_MAX = 500

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
odd_ids = st.sampled_from(
    ["ACC-999999", "acc-001", "ACC-001 ", " ACC-001", "ACC-0O1", "ACC-\u0661", "ACC-", "ACC-0000000000001",
     "SYS-EXTERNAL-USD", "ACC-1\u200b", "АСС-001", ""]
)  # fmt: skip
good_amounts = st.sampled_from(["0.01", "1", "1.5", "12.50", "25", "99.99", "100", " 5 ", 7, 3.5, 0.1])
odd_amounts = (
    st.sampled_from(["100.01", "-5", "+5", "0", "0.001", "1e3", "NaN", "Infinity", "5,00", "1,000", "５", "$5",
                     "12.", ".5", "5.000", "1" * 40, "", True])
    | st.integers(min_value=-5, max_value=10**12)
    | st.floats(min_value=-1, max_value=1e6, allow_nan=False)
)  # fmt: skip
memos = st.sampled_from((0, 0, 1, 1, 2, 3)).flatmap(
    lambda n: (st.none(), st.just("rent"), st.text(max_size=150),
               st.sampled_from(["a\u202eb", "x\x00y", " ", "é" * 141, "line\nbreak"]))[n]
)  # fmt: skip


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times in four."""
    return st.sampled_from((False, False, False, True)).flatmap(lambda is_odd: odd if is_odd else good)


amounts = mostly(good_amounts, odd_amounts)


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True once in `n` draws (Hypothesis favours small integers, so not `integers(0, n) == 0`)."""
    return st.sampled_from((False,) * (n - 1) + (True,))


def account_ids(ids: list[str]) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(ids), odd_ids)


def plausible(name: str, ids: list[str]) -> st.SearchStrategy[Any]:
    if name == "amount":
        return amounts
    if name == "memo":
        return memos
    return account_ids(ids)


def good_args(tool: str, ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A well-formed call on the example's own accounts (it may still fail on business rules)."""
    pair = st.permutations(ids).map(lambda p: p[:2])
    if tool == "transfer_funds":
        return st.tuples(pair, good_amounts, st.none() | st.just("rent")).map(
            lambda t: (
                {"from_account": t[0][0], "to_account": t[0][1], "amount": t[1]} | ({"memo": t[2]} if t[2] else {})
            )
        )
    if tool == "close_account":
        return pair.map(lambda p: {"account_id": p[0], "sweep_to": p[1]})
    return st.sampled_from(ids).map(lambda a: {"account_id": a})


@st.composite
def calls(draw: st.DrawFn, ids: list[str]) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """A valid call, a valid call with one thing wrong, or anything at all."""
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "mutated", "hostile"]))
    if kind == "hostile":
        tool = draw(mostly(st.sampled_from(TOOLS), st.text(max_size=20) | st.sampled_from(["Transfer_Funds", "echo"])))
        args: dict[str, Any] = {}
        for name in PARAMETERS.get(tool, ("account_id",)):
            choice = draw(st.sampled_from(["plausible"] * 8 + ["json", "absent"]))
            if choice == "plausible":
                args[name] = draw(plausible(name, ids))
            elif choice == "json":
                args[name] = draw(json_values)
        if draw(one_in(4)):
            args.update(draw(st.dictionaries(st.text(max_size=12), json_values, min_size=1, max_size=2)))
    else:
        tool = draw(st.sampled_from(["transfer_funds", "transfer_funds", "close_account", "get_account_balance"]))
        args = draw(good_args(tool, ids))
        if kind == "mutated":
            name = draw(st.sampled_from([*PARAMETERS[tool], "extra"]))
            how = draw(st.sampled_from(["odd", "json", "drop"]))
            if name == "extra":
                args[draw(st.text(max_size=12).filter(lambda k: k not in PARAMETERS[tool]))] = draw(json_values)
            elif how == "drop":
                args.pop(name, None)
            else:
                args[name] = draw(json_values if how == "json" else plausible(name, ids))
    meta: dict[str, Any] | None = None
    meta_kind = draw(st.sampled_from(["none", "none", "key", "key", "json"]))
    if meta_kind == "json":
        meta = {KEY: draw(json_values)}
    elif meta_kind == "key":  # unique per example (a key reused across examples would replay, not exercise)
        meta = {KEY: f"{ids[0]}/" + draw(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30))}
    return tool, args, meta


form_values = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=2)
)


TYPE_BACK = "\x00type-it-back"
"""Stands for 'type back what the question asks' in a drawn answer; filled in when asked."""


@st.composite
def answers(draw: st.DrawFn) -> types.ElicitResult:
    if draw(st.booleans()):  # a clean yes, typing back what a close asks for
        return types.ElicitResult(action="accept", content={"approve": True, "confirmation": TYPE_BACK})
    action = draw(st.sampled_from(["accept", "accept", "accept", "decline", "cancel"]))
    if action == "decline":
        return types.ElicitResult(action="decline")
    if action == "cancel":
        return types.ElicitResult(action="cancel")
    shape = draw(st.sampled_from(["yes", "yes", "yes", "no-content", "fields", "nested"]))
    if shape == "no-content":
        return types.ElicitResult(action="accept")
    content: dict[str, Any] = {}
    if shape == "yes":
        content["approve"] = True
        if draw(one_in(3)):
            content["note"] = draw(st.text(max_size=600))
        if not draw(one_in(4)):
            content["confirmation"] = TYPE_BACK
        elif draw(one_in(5)):
            content["confirmation"] = draw(st.text(max_size=12))
        if draw(one_in(5)):
            content[draw(st.text(min_size=1, max_size=8))] = draw(form_values)
        return types.ElicitResult(action="accept", content=content)
    keys = st.sampled_from(["approve", "note", "confirmation", "amount", "to_account", "Approve"]) | st.text(max_size=8)
    if shape == "fields":
        content = draw(st.dictionaries(keys, form_values, max_size=4))
        return types.ElicitResult(action="accept", content=content)
    content = draw(st.dictionaries(keys, json_values, min_size=1, max_size=3))
    return types.ElicitResult.model_construct(action="accept", content=content)  # beyond the schema's types


class FuzzResponder:
    """Gives the drawn answers in order (drawn up front: Hypothesis must not draw inside the
    client's task group), typing back the confirmation where the answer says so."""

    def __init__(self, script: list[types.ElicitResult]) -> None:
        self.script = script
        self.given: list[tuple[str, types.ElicitResult]] = []

    async def __call__(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        reply = self.script.pop(0) if self.script else types.ElicitResult(action="cancel")
        if reply.content is not None and reply.content.get("confirmation") == TYPE_BACK:
            typed = requested_confirmation(params.message)
            content = {k: v for k, v in reply.content.items() if k != "confirmation"}
            reply = types.ElicitResult(action="accept", content=content | ({"confirmation": typed} if typed else {}))
        self.given.append((params.message, reply))
        return reply


def clean_yes(reply: types.ElicitResult, tool: str, args: dict[str, Any]) -> bool:
    """A yes by the form's own rules, judged independently of the server's code."""
    content = reply.content
    if reply.action != "accept" or not isinstance(content, dict) or content.get("approve") is not True:
        return False
    allowed = {"approve", "note"} | ({"confirmation"} if tool == "close_account" else set())
    if any(value is not None and name not in allowed for name, value in content.items()):
        return False
    note = content.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        return False
    return tool != "close_account" or content.get("confirmation") == args.get("account_id")


def exact_minor(amount: Any) -> int | None:
    """What a valid amount means in cents by the documented rules, or None if it is not valid."""
    if isinstance(amount, bool):
        return None
    if isinstance(amount, str):
        text = amount.strip(" \t\r\n")
        value = Decimal(text) if AMOUNT_TEXT.fullmatch(text) else None
    elif isinstance(amount, int):
        value = Decimal(amount)
    elif isinstance(amount, float):
        value = Decimal(repr(amount))
    else:
        return None
    if value is None or value <= 0 or (value * 100) != (value * 100).to_integral_value():
        return None
    return int(value * 100)


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and ACCOUNT_ID.fullmatch(value) is not None


def check_executed(tool: str, args: dict[str, Any], body: dict[str, Any]) -> None:
    """What ran is exactly what was asked."""
    receipt = body["receipt"]
    assert set(args) <= set(PARAMETERS[tool]), args
    if tool == "transfer_funds":
        assert valid_id(args["from_account"]) and valid_id(args["to_account"])
        assert (receipt["from_account"], receipt["to_account"]) == (args["from_account"], args["to_account"])
        assert receipt["amount_minor"] == exact_minor(args["amount"])
        memo = args.get("memo")
        assert receipt.get("memo") == (memo.strip() or None if isinstance(memo, str) else None)
    else:
        assert valid_id(args["account_id"]) and receipt["account_id"] == args["account_id"]
        assert args.get("sweep_to") is None or valid_id(args["sweep_to"])


def check_clear(result: types.CallToolResult, tool: str, args: dict[str, Any]) -> None:
    """A refusal says what is wrong in a sentence, with a stable code, and echoes nothing it rejected
    (neither an argument's value nor the name of one the tool does not take)."""
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    assert text and "Traceback" not in text and 'File "' not in text
    body = result.structured_content
    if body is None:  # the SDK's own refusal (e.g. an unknown tool)
        assert result.is_error
        return
    assert body["status"] in STATUSES and isinstance(body["message"], str) and body["message"]
    if body["status"] in ("failed",) or result.is_error:
        error = body["error"]
        assert isinstance(error, dict) and CODE.fullmatch(error["code"]) and error["message"], body
        for value in args.values():
            if isinstance(value, str) and len(value.strip()) >= 8 and not valid_id(value):
                assert value.strip() not in error["message"], (value, error)
        allowed = " ".join(PARAMETERS.get(tool, ()))
        for name in args:
            if len(name.strip()) >= 8 and name.strip() not in allowed:
                assert name.strip() not in error["message"] and error.get("field") != name, (name, error)


def ledger_state(books: Books) -> tuple[Any, ...]:
    shot = snapshot(books.db)
    return shot["accounts"], shot["transactions"], shot["entries"]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MCPServer[Any], Books, str]]:
    """The server under the shipped policy, the books, and an account no example touches."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'ledger.db'}"
    settings = Settings(db_url=url, seed_demo=False, approval_timeout=30, _env_file=None)  # type: ignore[call-arg]
    books = Books(url)
    [sentinel] = books.open_accounts(1, "1.00")
    EntitlementAdmin(books.db, "fuzz").grant_role("local", "operator")  # the caller may act on every account
    yield build_server(open_state(settings), settings), books, sentinel
    books.close()


TALLY: dict[str, int] = {}


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic, serializing the deliberately ill-typed answers
@pytest.mark.parametrize("mode", ["auto", "legacy"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzzed_calls_never_run_unapproved_or_invalid(
    target: tuple[MCPServer[Any], Books, str], mode: str, data: st.DataObject
) -> None:
    server, books, sentinel = target
    ids = books.open_accounts(2, "100.00") + books.open_accounts(1, "0")
    tool, args, meta = data.draw(calls(ids), label="call")
    responder = FuzzResponder(data.draw(st.lists(answers(), min_size=1, max_size=3), label="answers"))
    before = ledger_state(books)

    async def exercise() -> tuple[types.CallToolResult | MCPError, types.CallToolResult]:
        async with Client(server, elicitation_callback=responder, mode=mode) as client:  # type: ignore[arg-type]
            with anyio.fail_after(30):
                try:
                    result: types.CallToolResult | MCPError = await client.call_tool(tool, args, meta=meta)  # type: ignore[arg-type]
                except MCPError as refused:  # a protocol-level refusal (e.g. a malformed answer)
                    result = refused
                alive = await client.call_tool("get_account_balance", {"account_id": sentinel})
        return result, alive

    result, alive = anyio.run(exercise)
    after = ledger_state(books)

    assert not alive.is_error and alive.structured_content is not None
    assert alive.structured_content["status"] == "executed", "the server stopped answering"
    name = tool if tool in TOOLS else "unknown tool"
    outcome_name = f"{name}: protocol error" if isinstance(result, MCPError) else f"{name}: SDK refusal"
    if isinstance(result, types.CallToolResult):
        check_clear(result, tool, args)
        body = result.structured_content or {}
        if "status" in body:
            code = (body.get("error") or {}).get("code")
            outcome_name = f"{name}: {body['status']}" + (f" ({code})" if code else "")
        if body.get("status") == "executed" and tool != "get_account_balance":
            assert after != before, "reported executed, but nothing changed"
    if after != before:
        assert isinstance(result, types.CallToolResult) and result.structured_content is not None
        assert result.structured_content["status"] == "executed" and tool in ("transfer_funds", "close_account")
        assert responder.given, "money moved without anyone being asked"
        assert clean_yes(responder.given[-1][1], tool, args), responder.given[-1]
        check_executed(tool, args, result.structured_content)
    TALLY[outcome_name] = TALLY.get(outcome_name, 0) + 1


def test_fuzz_tally() -> None:
    """Runs after the fuzzing (file order): the examples reached both refusals and executions."""
    if not TALLY:
        pytest.skip("run together with the fuzz test")
    record("fuzz", examples=sum(TALLY.values()), outcomes=dict(sorted(TALLY.items())))
    moved = ("transfer_funds: executed", "close_account: executed")
    assert any(TALLY.get(name) for name in moved), TALLY
    assert any(name.startswith("transfer_funds: failed") for name in TALLY), TALLY


def test_ci_draws_the_same_examples_on_every_run() -> None:
    """Once a CI run failed on an example no later run drew again: CI runs are derandomised."""
    ci = settings.get_profile(select_profile({"CI": "true"}))
    drawn: list[list[Any]] = []

    @settings(ci, max_examples=25)
    @given(calls(["ACC-1", "ACC-2", "ACC-3"]))
    def draw(call: Any) -> None:
        drawn[-1].append(call)

    for _ in range(2):
        drawn.append([])
        draw()
    assert drawn[0] == drawn[1] and len(drawn[0]) == 25
    drill = settings.get_profile(select_profile({"CI": "true", PROFILE_ENV: "drill"}))
    assert not drill.derandomize and drill.max_examples > settings.get_profile("ci").max_examples
