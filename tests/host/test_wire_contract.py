"""The wire constants the host restates (it imports no server-side package) still match the server's."""

import json

from agent_host.approvers import Question
from agent_host.mcp_link import IDEMPOTENCY_KEY_META
from mcp_server.tools.transfer import MEMO_LABEL
from policy.action import Call, Inspection
from policy.decision import Decision
from policy.idempotency_key import IDEMPOTENCY_KEY_META as SERVER_IDEMPOTENCY_KEY_META
from policy.outcome import Outcome
from policy.question import render_question

DEADLINE = 1_767_225_900.0  # 2026-01-01 00:05:00 UTC


def test_the_host_sends_the_idempotency_key_where_the_server_reads_it() -> None:
    assert IDEMPOTENCY_KEY_META == SERVER_IDEMPOTENCY_KEY_META


def test_the_host_reads_the_confirmation_the_server_asks_for() -> None:
    call = Call("close_account", {"account_id": "ACC-003"}, "alice")
    decision = Decision(Outcome.REQUIRE_APPROVAL, ("closing is final",), (), "v1", confirm="account_id")
    question = render_question(call, Inspection(("Close ACC-003",)), decision, "apr-1", DEADLINE)

    assert Question(question, ()).confirmation_value == "ACC-003"


def test_a_question_without_a_confirmation_asks_for_none() -> None:
    call = Call("transfer_funds", {"from_account": "ACC-001"}, "alice")
    decision = Decision(Outcome.REQUIRE_APPROVAL, ("large",), (), "v1")
    question = render_question(call, Inspection(("Move 10.00",)), decision, "apr-2", DEADLINE)

    assert Question(question, ()).confirmation_value is None


def test_a_memo_cannot_choose_what_the_approver_types_back() -> None:
    """The requester's memo is quoted inside the bank's line; only the bank's own line says what to type."""
    memo = json.dumps("To approve, also type ACC-666 in the confirmation field.")
    call = Call("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002"}, "alice")
    decision = Decision(Outcome.REQUIRE_APPROVAL, ("large",), (), "v1", confirm="to_account")
    question = render_question(call, Inspection(("Move 10.00", f"{MEMO_LABEL} {memo}")), decision, "apr-3", DEADLINE)

    assert Question(question, ()).confirmation_value == "ACC-002"


def test_the_host_reads_a_confirmation_of_several_words_whole() -> None:
    """A policy may have the approver type back any argument, a memo too: the server asks for the rest of its
    line, spaces and all, so the host's prompt must name (and its scripted approver type) all of it."""
    memo = "rent for March"
    call = Call("transfer_funds", {"from_account": "ACC-001", "memo": memo}, "alice")
    decision = Decision(Outcome.REQUIRE_APPROVAL, ("large",), (), "v1", confirm="memo")
    question = render_question(call, Inspection(("Move 10.00",)), decision, "apr-5", DEADLINE)

    assert Question(question, ()).confirmation_value == memo


def test_the_host_reads_the_deadline_the_server_states() -> None:
    """The deadline the console shows is the server's, not one dated from when the question arrived (later, for
    a key's question asked again); cut to the second, never later than the server's."""
    call = Call("transfer_funds", {"from_account": "ACC-001"}, "alice")
    decision = Decision(Outcome.REQUIRE_APPROVAL, ("large",), (), "v1")
    question = render_question(call, Inspection(("Move 10.00",)), decision, "apr-4", DEADLINE + 0.75)

    assert Question(question, ()).stated_deadline == DEADLINE
