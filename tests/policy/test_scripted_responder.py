"""The policy-testing kit answers as a real client would, and a script that does not fit its questions fails
the test: an author's policy test must not pass where the real server, with a real approver, would not."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from policy.testing import Answer, Question, ScriptedResponder, approve, decline, reject, silence

POLICY = """
[tools.get_account_balance]
default = "allow"

[tools.transfer_funds]
default = "allow"

[[tools.transfer_funds.rules]]
name = "large"
when = "amount_minor > minor(1000)"
outcome = "require_approval"
reason = "Transfers above 1,000.00 need approval."

[[tools.transfer_funds.rules]]
name = "larger"
when = "amount_minor > minor(3000)"
outcome = "require_approval"
channel = "desk"
reason = "Transfers above 3,000.00 need the desk."

[[tools.transfer_funds.rules]]
name = "ceiling"
when = "amount_minor > minor(10000)"
outcome = "deny"
reason = "Transfers above 10,000.00 are refused."

[tools.close_account]
default = "deny"
"""
CLOSE_ASKS = """[tools.close_account]
default = "require_approval"
reason = "Closing an account cannot be undone."
confirm = "account_id"
"""
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 and 2025-11-25


def transfer(amount: str) -> dict[str, str]:
    return {"from_account": "ACC-001", "to_account": "ACC-002", "amount": amount}


@asynccontextmanager
async def client(
    tmp_path: Path, responder: ScriptedResponder, mode: str, *, written: bool = False
) -> AsyncIterator[Client]:
    """A client of a new demo ledger under `POLICY` (or the policy.toml already `written`)."""
    if not written:
        (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    settings = Settings(
        db_url=f"sqlite:///{tmp_path}/ledger.db",
        policy=tmp_path / "policy.toml",
        audit_key_file=tmp_path / "audit.key",
        approval_timeout=5,  # a desk question left waiting ends within the test's time
        _env_file=None,  # type: ignore[call-arg]
    )
    server = build_server(open_state(settings, create=True, seed=True), settings)
    async with Client(server, elicitation_callback=responder, mode=mode) as connected:
        yield connected


async def call(connected: Client, arguments: dict[str, str], mode: str) -> CallToolResult | None:
    """The call's result; None where the 2026-07-28 client refused to go on (the responder refused a question)."""
    try:
        return await connected.call_tool("transfer_funds", arguments)
    except MCPError:
        assert mode == "auto"
        return None


@pytest.mark.anyio
@MODES
async def test_check_passes_when_every_question_had_its_answer(tmp_path: Path, mode: str) -> None:
    responder = ScriptedResponder(approve(note="ok"), reject())
    async with client(tmp_path, responder, mode) as connected:
        first = await connected.call_tool("transfer_funds", transfer("1500"))
        second = await connected.call_tool("transfer_funds", transfer("1500"))
    assert first.structured_content is not None and first.structured_content["status"] == "executed"
    assert second.structured_content is not None and second.structured_content["status"] == "rejected"
    responder.check()


@pytest.mark.anyio
@MODES
async def test_a_question_beyond_the_script_fails_check_though_the_call_looks_denied(tmp_path: Path, mode: str) -> None:
    """The test "a 1,500 transfer is denied" with nobody scripted to answer: on 2025-11-25 the refused question
    ends `denied`, as a deny rule would, so the test's own assertion passes on a policy that only asks."""
    responder = ScriptedResponder()
    async with client(tmp_path, responder, mode) as connected:
        result = await call(connected, transfer("1500"), mode)
    assert result is None or (result.structured_content or {})["status"] == "denied"
    assert responder.unexpected == 1
    with pytest.raises(AssertionError, match=r"(?s)no answer left; asked:.*Transfers above 1,000\.00 need approval"):
        responder.check()


@pytest.mark.anyio
@MODES
async def test_an_answer_never_used_fails_check(tmp_path: Path, mode: str) -> None:
    """`approve()` scripted for a call the policy allowed outright: the call executes, nobody approved it."""
    responder = ScriptedResponder(approve())
    async with client(tmp_path, responder, mode) as connected:
        result = await connected.call_tool("transfer_funds", transfer("500"))
    assert (result.structured_content or {})["status"] == "executed"
    with pytest.raises(AssertionError, match="1 answer was never used"):
        responder.check()


@pytest.mark.anyio
@MODES
@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        (approve(note="x" * 501), "is too long"),
        (approve(confirmation="ACC-001"), "'confirmation' was unexpected"),
        (reject(note="x" * 501), "is too long"),
    ],
)
async def test_an_answer_no_real_client_could_send_is_refused(
    tmp_path: Path, mode: str, answer: Answer, wrong: str
) -> None:
    """A client validates its form against the question's schema before sending it: a scripted answer that does
    not fit is the script's mistake, never a server's rejection the test could rely on."""
    responder = ScriptedResponder(answer)
    async with client(tmp_path, responder, mode) as connected:
        result = await call(connected, transfer("1500"), mode)
    assert result is None or (result.structured_content or {})["status"] == "denied"
    with pytest.raises(AssertionError, match=wrong):
        responder.check()


@pytest.mark.anyio
@MODES
async def test_a_desk_question_is_recorded_with_its_link_and_cannot_be_approved_in_the_client(
    tmp_path: Path, mode: str
) -> None:
    """A desk rule's question is a link (URL-mode elicitation): the human can open it or not, never approve in
    the client. `approve()` once took it as the link opened, and the call then waited, unanswerable, until the
    approval expired (2025-11-25), or the next round found the script empty (2026-07-28)."""
    responder = ScriptedResponder(approve())
    async with client(tmp_path, responder, mode) as connected:
        result = await call(connected, transfer("4000"), mode)
    assert result is None or (result.structured_content or {})["status"] == "pending_approval"
    [question] = responder.questions
    assert question.url is not None and "/desk/approvals/APR-" in question.url
    assert question.url in question.message and question.schema == {}
    with pytest.raises(AssertionError, match="a desk link, which no answer in the client approves"):
        responder.check()


@pytest.mark.anyio
@MODES
async def test_a_desk_link_not_opened_leaves_nothing_run(tmp_path: Path, mode: str) -> None:
    responder = ScriptedResponder(decline())
    async with client(tmp_path, responder, mode) as connected:
        result = await connected.call_tool("transfer_funds", transfer("4000"))
    # 2025-11-25 settles the question (the link was not opened); 2026-07-28 answers with the link itself.
    assert (result.structured_content or {})["status"] == ("cancelled" if mode == "legacy" else "pending_approval")
    responder.check()


@pytest.mark.anyio
@MODES
async def test_a_no_to_a_close_fills_the_confirmation_its_form_requires(tmp_path: Path, mode: str) -> None:
    (tmp_path / "policy.toml").write_text(
        POLICY.replace('[tools.close_account]\ndefault = "deny"', CLOSE_ASKS), encoding="utf-8"
    )
    responder = ScriptedResponder(reject(note="not today"))
    async with client(tmp_path, responder, mode, written=True) as connected:
        result = await connected.call_tool("close_account", {"account_id": "ACC-003", "sweep_to": "ACC-001"})
    assert (result.structured_content or {})["status"] == "rejected"
    assert responder.questions[0].schema["required"] == ["approve", "confirmation"]
    responder.check()


def test_each_form_is_checked_against_its_own_schema_however_often_it_was_seen() -> None:
    """The responder compiles a form's schema once and reuses it: an answer that fits one form must still be
    refused by another that differs in a field (or only in its fields' order, which is the same form)."""
    optional = {"type": "object", "properties": {"approve": {"type": "boolean"}, "note": {"type": "string"}}}
    required = {**optional, "required": ["approve", "note"]}
    reordered = {"required": ["approve", "note"], "properties": required["properties"], "type": "object"}
    answer = approve()
    reply = answer.reply("Approve?")
    for _ in range(3):
        assert answer.misfit(reply, Question("Approve?", optional)) is None
        assert "'note' is a required property" in str(answer.misfit(reply, Question("Approve?", required)))
        assert "'note' is a required property" in str(answer.misfit(reply, Question("Approve?", reordered)))
    assert answer.misfit(approve(note="ok").reply("Approve?"), Question("Approve?", required)) is None


INVERTED = POLICY.replace('when = "amount_minor > minor(1000)"', 'when = "amount_minor < minor(1000)"')
"""`large` with its comparison typed the wrong way round: it asks about small transfers, and lets large ones run."""


@pytest.mark.anyio
@MODES
async def test_an_answer_expecting_what_is_shown_refuses_a_question_showing_otherwise(
    tmp_path: Path, mode: str
) -> None:
    """The test "a 500 transfer runs, a 1,500 one is asked about and approved" on a policy that asks about the
    500 one instead: both execute, one question, one answer, so statuses and `check()` agree with the test. An
    answer bound to what its question must show refuses the other question, and `check()` names both."""
    (tmp_path / "policy.toml").write_text(INVERTED, encoding="utf-8")
    responder = ScriptedResponder(approve().expecting("Transfer $1,500.00 (USD) from ACC-001"))
    async with client(tmp_path, responder, mode, written=True) as connected:
        small = await call(connected, transfer("500"), mode)
        await connected.call_tool("transfer_funds", transfer("1500"))
    assert small is None or (small.structured_content or {})["status"] == "denied"
    with pytest.raises(AssertionError) as failed:
        responder.check()
    assert "approve() expected a question showing 'Transfer $1,500.00 (USD) from ACC-001'; asked:\n" in str(
        failed.value
    )
    assert "    Transfer $500.00 (USD) from ACC-001" in str(failed.value)


@pytest.mark.anyio
@MODES
async def test_answers_expecting_what_their_questions_show_pass(tmp_path: Path, mode: str) -> None:
    responder = ScriptedResponder(
        approve().expecting("Transfer $1,500.00", "to ACC-002 (Bob Example)"), decline().expecting("/desk/approvals/")
    )
    async with client(tmp_path, responder, mode) as connected:
        first = await connected.call_tool("transfer_funds", transfer("1500"))
        await connected.call_tool("transfer_funds", transfer("3200"))  # the desk's, from the 3,500.00 left
    assert (first.structured_content or {})["status"] == "executed"
    responder.check()


def test_an_expectation_names_some_text() -> None:
    for texts in [(), ("",)]:
        with pytest.raises(ValueError, match="expecting"):
            approve().expecting(*texts)


@pytest.mark.anyio
async def test_a_refused_question_is_named_in_the_error_the_call_raises(tmp_path: Path) -> None:
    """On 2026-07-28 a refused question ends the test at the call, before `check()`: its error must say what was
    asked, not only that something was refused."""
    responder = ScriptedResponder()
    async with client(tmp_path, responder, "auto") as connected:
        with pytest.raises(MCPError, match=r"(?s)no answer left.*Transfer \$1,500\.00 \(USD\) from ACC-001"):
            await connected.call_tool("transfer_funds", transfer("1500"))


def test_answers_never_used_are_named_as_the_script_wrote_them() -> None:
    responder = ScriptedResponder(approve(note="ok"), reject(), decline().expecting("ACC-003"), silence(2.5))
    with pytest.raises(AssertionError) as failed:
        responder.check()
    assert str(failed.value).endswith(
        "4 answers were never used: approve(note='ok'), reject(), decline().expecting('ACC-003'), silence(2.5)"
    )


@pytest.mark.anyio
@MODES
async def test_asked_returns_the_question_it_waited_for_though_more_arrived(tmp_path: Path, mode: str) -> None:
    responder = ScriptedResponder(approve(), approve())
    async with client(tmp_path, responder, mode) as connected:
        await connected.call_tool("transfer_funds", transfer("1500"))
        await connected.call_tool("transfer_funds", transfer("1600"))
    assert "Transfer $1,500.00" in (await responder.asked()).message
    assert "Transfer $1,600.00" in (await responder.asked(2)).message
    responder.check()
