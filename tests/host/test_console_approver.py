"""The console approver is honest: it shows the deadline, checks the typed confirmation, and turns
Ctrl-C into a ``cancel`` the server records (the subprocess side is in ``test_cli.py``)."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from dataclasses import replace
from typing import Any, cast

import anyio
import mcp_types
import pytest
from rich.console import Console

from agent_host.approvers import Answer, ApprovalDesk, ConsoleApprover, FormField, Question
from agent_host.errors import Interrupted

from .helpers import CapturedDisplay, scripted
from .keyboard import ctrl_c_on_another_thread

CLOSE = Question(
    "Approval required: close_account\nTo approve, also type ACC-003 in the confirmation field.",
    Question.from_params(
        mcp_types.ElicitRequestFormParams(
            message="x",
            requested_schema={
                "type": "object",
                "properties": {"approve": {}, "confirmation": {}, "note": {}},
                "required": ["approve", "confirmation"],
            },
        )
    ).fields,
    deadline=1_000.0,
)


def _typed(monkeypatch: pytest.MonkeyPatch, *lines: str | type[BaseException]) -> None:
    """The person types ``lines`` (an exception class is a key press such as Ctrl-C), then closes the input."""
    remaining = list(lines)

    def typed(prompt: str = "") -> str:
        if not remaining:
            raise EOFError
        line = remaining.pop(0)
        if isinstance(line, type):
            raise line
        return line

    monkeypatch.setattr("builtins.input", typed)


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


def _shown(console: Console) -> str:
    return cast(io.StringIO, console.file).getvalue()


@pytest.mark.anyio
async def test_a_mistyped_confirmation_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    console = _console()
    _typed(monkeypatch, "y", "ACC-001", "acc-003", "ACC-003", "closing")

    answer = await ConsoleApprover(console, clock=lambda: 900.0).answer(CLOSE)

    assert (answer.action, answer.approve, answer.confirmation, answer.note) == ("accept", True, "ACC-003", "closing")
    assert _shown(console).count("That is not ACC-003; type it exactly as shown.") == 2


@pytest.mark.anyio
async def test_an_empty_confirmation_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    _typed(monkeypatch, "y", "", "")

    answer = await ConsoleApprover(_console(), clock=lambda: 900.0).answer(CLOSE)

    assert (answer.action, answer.approve, answer.confirmation) == ("accept", False, None)


@pytest.mark.anyio
async def test_the_prompt_shows_the_time_left_and_a_late_answer_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    console = _console()
    now = iter([880.0, 1_001.0])  # asked with 120 s left, answered a second after the deadline
    _typed(monkeypatch, "y", "ACC-003", "")

    late = await ConsoleApprover(console, clock=lambda: next(now)).answer(CLOSE)

    assert "Approve this action? (120 s left)" in _shown(console)
    assert late.approve and "after the deadline: the server will report the call expired" in late.reason


@pytest.mark.anyio
async def test_ctrl_c_answers_cancel_and_stops_the_host_after_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    display = CapturedDisplay()
    desk = ApprovalDesk(ConsoleApprover(display.console), display, approval_timeout=300.0, clock=lambda: 0.0)
    _typed(monkeypatch, KeyboardInterrupt)
    params = mcp_types.ElicitRequestFormParams(message=CLOSE.message, requested_schema={"type": "object"})

    result = await desk(cast(Any, None), params)

    assert isinstance(result, mcp_types.ElicitResult) and result.action == "cancel"
    assert desk.interrupted and desk.records[0][1].reason == "interrupted with Ctrl-C"
    with pytest.raises(Interrupted) as stopped:
        desk.stop_if_interrupted("close_account", {"status": "cancelled"})
    assert stopped.value.exit_code == 130
    assert (
        str(stopped.value)
        == "Interrupted: the approval for close_account was cancelled (the server recorded: cancelled)."
    )


@pytest.mark.anyio
async def test_the_desk_dates_each_question_from_the_approval_timeout() -> None:
    display = CapturedDisplay()
    desk = ApprovalDesk(scripted("reject"), display, approval_timeout=300.0, clock=lambda: 1_767_225_600.0)
    params = mcp_types.ElicitRequestFormParams(message="Approval required: x", requested_schema={"type": "object"})

    await desk(cast(Any, None), params)

    question = desk.records[0][0]
    assert question.deadline == 1_767_225_900.0  # 2026-01-01 00:05:00 UTC
    assert "(by 2026-01-01 00:05:00 UTC); after that the server records it expired." in display.text
    desk.stop_if_interrupted("x", {"status": "rejected"})  # nobody pressed Ctrl-C: nothing happens


@pytest.mark.anyio
async def test_a_question_stating_its_deadline_is_dated_by_it() -> None:
    """A key's question asked again arrives long after it was asked: dated from its arrival, the console would
    promise minutes the server no longer gives."""
    display = CapturedDisplay()
    desk = ApprovalDesk(scripted("reject"), display, approval_timeout=300.0, clock=lambda: 1_767_225_800.0)
    message = "Approval required: x\nAnswer by: 2026-01-01 00:05:00 UTC\nReference: APR-1"
    params = mcp_types.ElicitRequestFormParams(message=message, requested_schema={"type": "object"})

    await desk(cast(Any, None), params)

    assert desk.records[0][0].deadline == 1_767_225_900.0, "the server's, not 00:08:20 (arrival + 300 s)"


def test_ctrl_c_taken_by_another_thread_still_interrupts_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python runs signal handlers on the main thread only: a prompt blocked in the kernel's read must not wait
    for the next key press to see a Ctrl-C that another thread took."""
    console = _console()

    answer, typed_first = ctrl_c_on_another_thread(
        monkeypatch,
        lambda: anyio.run(ConsoleApprover(console).answer, CLOSE),
        lambda: "Approve this action?" in _shown(console),
    )

    assert isinstance(answer, Answer) and (answer.action, answer.reason) == ("cancel", "interrupted with Ctrl-C")
    assert not typed_first, "the prompt saw Ctrl-C only when a key was pressed"


def test_keys_typed_before_the_question_do_not_answer_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A "y" typed ahead (say, on the model's cue while the turn ran) must not approve a question not yet shown."""
    console = _console()
    question = Question(
        "Approval required: transfer_funds", (FormField("approve", "Approve", "", required=True),), deadline=1_000.0
    )
    leader, follower = os.openpty()
    monkeypatch.setattr("sys.stdin", os.fdopen(follower, "r"))
    os.write(leader, b"y\n")  # typed before the question arrived

    def person() -> None:
        while "Approve this action?" not in _shown(console):
            time.sleep(0.01)
        os.write(leader, b"n\n")  # the answer given once the question was read

    worker = threading.Thread(target=person, daemon=True)
    worker.start()
    try:
        answer = anyio.run(ConsoleApprover(console, clock=lambda: 900.0).answer, question)
    finally:
        worker.join(5)
        os.close(leader)
        sys.stdin.close()

    assert (answer.action, answer.approve) == ("accept", False)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("wanted", "shown"),
    [("[/x]", "[/x]"), ("[bold]ACC-003", "[bold]ACC-003"), ("\x1b[2K\x1b[1AACC-003", "\\x1b[2K\\x1b[1AACC-003")],
)
async def test_the_confirmation_prompt_shows_the_servers_value_as_text(
    monkeypatch: pytest.MonkeyPatch, wanted: str, shown: str
) -> None:
    """The value to type back comes from the server's question: read as rich markup, `[/x]` crashed the question
    (MarkupError) and `[bold]ACC-003` was shown as ACC-003, which the server does not take; control characters
    reached the terminal. It is shown as the display shows the server's text, and checked as the server will."""
    console = _console()
    question = replace(
        CLOSE, message=f"Approval required: close_account\nTo approve, also type {wanted} in the confirmation field."
    )
    _typed(monkeypatch, "y", "ACC-003", wanted, "")

    answer = await ConsoleApprover(console, clock=lambda: 900.0).answer(question)

    assert (answer.approve, answer.confirmation) == (True, wanted)
    assert f"Type {shown} to confirm (empty rejects)" in _shown(console)
    assert f"That is not {shown}; type it exactly as shown." in _shown(console)
    assert "\x1b" not in _shown(console)
