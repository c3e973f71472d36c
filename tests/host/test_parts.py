"""The host's pure parts: schema bridging, SSE parsing, approver scripts, token refresh, retry delays."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import mcp_types
import openai._constants as openai_constants
import pytest
from rich.console import Console

from agent_host.approvers import Answer, ConsoleApprover, DenyApprover, Question, make_approver, parse_script
from agent_host.errors import AuthenticationFailed, ConfigurationError, RateLimited, ServiceFailed, http_failure
from agent_host.foundry.access import describe_token
from agent_host.foundry.function_tools import function_tool
from agent_host.foundry.retries import (
    INITIAL_RETRY_DELAY_S,
    MAX_RETRIES,
    MAX_RETRY_AFTER_S,
    MAX_RETRY_DELAY_S,
    TIMEOUT,
    retry_delay,
    should_retry,
)
from agent_host.foundry.sse import parse_sse
from agent_host.host import mcp_target
from agent_host.settings import HostSettings

TRANSFER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "transfer_fundsArguments",
    "properties": {
        "from_account": {"type": "string", "title": "From Account", "description": "Account id"},
        "amount": {"anyOf": [{"type": "string"}, {"type": "number"}], "title": "Amount"},
        "memo": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Memo"},
        "kind": {"type": "string", "enum": ["a", "b"], "default": "a"},
    },
    "required": ["from_account", "amount"],
}


def _tool(schema: dict[str, Any]) -> mcp_types.Tool:
    return mcp_types.Tool(name="transfer_funds", description="Move money.", input_schema=schema)


def test_strict_schema_makes_optional_properties_required_and_nullable() -> None:
    tool = function_tool(_tool(TRANSFER_SCHEMA))

    assert tool.definition() == {
        "type": "function",
        "name": "transfer_funds",
        "description": "Move money.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {
                "from_account": {"type": "string", "description": "Account id"},
                "amount": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                "memo": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "kind": {"type": ["string", "null"], "enum": ["a", "b", None]},
            },
            "required": ["from_account", "amount", "memo", "kind"],
            "additionalProperties": False,
        },
    }
    # The model's strict nulls for optional arguments are dropped before the MCP call.
    assert tool.mcp_arguments({"from_account": "ACC-001", "amount": 5, "memo": None, "kind": None}) == {
        "from_account": "ACC-001",
        "amount": 5,
    }


def test_schemas_strict_mode_cannot_express_are_sent_as_written_with_strict_false() -> None:
    schema = {"type": "object", "properties": {"extra": {"type": "object", "additionalProperties": True}}}
    tool = function_tool(_tool(schema))
    unchanged = function_tool(_tool(TRANSFER_SCHEMA), strict=False)

    assert tool.definition()["strict"] is False and tool.parameters == schema
    assert unchanged.definition()["strict"] is False and unchanged.parameters == TRANSFER_SCHEMA
    assert unchanged.mcp_arguments({"memo": None}) == {"memo": None}


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _events(*lines: str) -> list[dict[str, Any]]:
    return [event async for event in parse_sse(_lines(*lines))]


@pytest.mark.anyio
async def test_sse_blocks_comments_multiline_data_and_done() -> None:
    events = await _events(
        ": keep-alive",
        "event: response.created",
        'data: {"type": "response.created",',
        'data: "sequence_number": 0}',
        "",
        "event: response.output_text.delta\r\n",
        'data:{"delta": "Hi"}\r\n',
        "\r\n",
        "data: [DONE]",
        "",
        'data: {"type": "never.read"}',
        "",
    )

    assert events == [
        {"type": "response.created", "sequence_number": 0},
        {"type": "response.output_text.delta", "delta": "Hi"},
    ]


@pytest.mark.anyio
async def test_sse_without_a_final_blank_line_and_bad_data() -> None:
    assert await _events('data: {"type": "response.completed"}') == [{"type": "response.completed"}]
    with pytest.raises(ServiceFailed, match="not JSON"):
        await _events("data: {oops", "")


def test_script_lines_and_json_forms() -> None:
    text = """
    # approvals for the nightly run
    approve note="rent, March"
    approve confirm=ACC-009   # a deliberately wrong confirmation
    reject note='not today'
    decline
    cancel
    """
    answers = parse_script(text)

    assert [(a.action, a.approve, a.confirmation, a.note) for a in answers] == [
        ("accept", True, None, "rent, March"),
        ("accept", True, "ACC-009", None),
        ("accept", False, None, "not today"),
        ("decline", False, None, None),
        ("cancel", False, None, None),
    ]
    assert parse_script('["approve", "reject note=no"]')[1].note == "no"


@pytest.mark.parametrize("bad", ["maybe", "approve please", "reject confirm=ACC-1", "decline note=x", '["approve", 1]'])
def test_script_errors_name_the_line(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="script"):
        parse_script(bad)


CLOSE_QUESTION = Question(
    "Approval required: close_account\nTo approve, also type ACC-003 in the confirmation field.",
    (),
)


def test_answers_carry_only_the_fields_the_form_has() -> None:
    plain = Question.from_params(
        mcp_types.ElicitRequestFormParams(
            message="Approval required: transfer_funds",
            requested_schema={
                "type": "object",
                "properties": {"approve": {"type": "boolean"}},
                "required": ["approve"],
            },
        )
    )
    answer = Answer("accept", True, confirmation="ACC-003", note="fine")

    assert answer.result(plain).content == {"approve": True}
    assert CLOSE_QUESTION.confirmation_value == "ACC-003"
    assert Answer("decline").result(plain) == mcp_types.ElicitResult(action="decline")


def _typed(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """The person at the terminal types ``lines``, then closes the input."""
    remaining = list(lines)

    def typed(prompt: str = "") -> str:
        if not remaining:
            raise EOFError
        return remaining.pop(0)

    monkeypatch.setattr("builtins.input", typed)


@pytest.mark.anyio
async def test_console_approver_asks_yes_no_confirmation_and_note(monkeypatch: pytest.MonkeyPatch) -> None:
    question = Question(
        CLOSE_QUESTION.message,
        tuple(
            Question.from_params(
                mcp_types.ElicitRequestFormParams(
                    message="x",
                    requested_schema={
                        "type": "object",
                        "properties": {"approve": {}, "confirmation": {}, "note": {}},
                        "required": ["approve", "confirmation"],
                    },
                )
            ).fields
        ),
    )
    console = Console(file=io.StringIO())

    _typed(monkeypatch, "maybe", "y", "ACC-003", "looks right")
    answer = await ConsoleApprover(console).answer(question)
    _typed(monkeypatch)
    closed = await ConsoleApprover(console).answer(question)

    assert (answer.action, answer.approve, answer.confirmation, answer.note) == (
        "accept",
        True,
        "ACC-003",
        "looks right",
    )
    assert closed.action == "cancel"
    assert "Type ACC-003 to confirm" in console.file.getvalue()  # type: ignore[attr-defined]


def test_without_a_terminal_the_default_is_deny_and_console_is_refused() -> None:
    console = Console()
    assert isinstance(make_approver("deny", console, interactive=False), DenyApprover)
    with pytest.raises(ConfigurationError, match="needs a terminal"):
        make_approver("console", console, interactive=False)
    with pytest.raises(ConfigurationError, match="Cannot read the approver script"):
        make_approver("scripted:/nonexistent/answers.txt", console, interactive=False)


def test_retry_delay_honours_the_servers_hints() -> None:
    assert retry_delay({"retry-after-ms": "250", "retry-after": "1"}, 0) == 0.25
    assert retry_delay({"Retry-After": "2"}, 0) == 2.0
    assert retry_delay({"retry-after": "120"}, 0) == 120.0
    # A date in the past, or no hint: jittered exponential backoff (0.5 s doubling, at most 8 s, -0..25 %).
    assert retry_delay({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 2, rand=lambda: 0.0) == 2.0
    assert retry_delay({}, 0, rand=lambda: 0.0) == 0.5
    assert retry_delay({}, 0, rand=lambda: 1.0) == 0.375
    assert retry_delay({}, 10, rand=lambda: 0.0) == 8.0


def test_what_is_retried_follows_the_sdk() -> None:
    assert [status for status in (400, 401, 404, 408, 409, 429, 500, 503) if should_retry(status, {})] == [
        408,
        409,
        429,
        500,
        503,
    ]
    assert not should_retry(429, {"retry-after": "3600"}), "a hint over two minutes is not waited for"
    assert not should_retry(503, {"x-should-retry": "false"}) and should_retry(400, {"x-should-retry": "true"})


def test_timeouts_and_retries_are_the_sdks() -> None:
    assert (TIMEOUT.read, TIMEOUT.connect) == (
        openai_constants.DEFAULT_TIMEOUT.read,
        openai_constants.DEFAULT_TIMEOUT.connect,
    )
    assert MAX_RETRIES == openai_constants.DEFAULT_MAX_RETRIES == HostSettings.model_fields["max_retries"].default
    assert HostSettings.model_fields["response_timeout"].default == TIMEOUT.read
    assert (INITIAL_RETRY_DELAY_S, MAX_RETRY_DELAY_S, MAX_RETRY_AFTER_S) == (
        openai_constants.INITIAL_RETRY_DELAY,
        openai_constants.MAX_RETRY_DELAY,
        openai_constants.MAX_RETRY_AFTER_DELAY,
    )


def test_errors_say_what_to_do() -> None:
    denied = http_failure(
        401, {"error": {"code": "PermissionDenied", "message": "nope"}}, {}, endpoint="https://x", identity="me@example"
    )
    throttled = http_failure(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"}, endpoint="e", identity="i")

    assert isinstance(denied, AuthenticationFailed)
    assert "HTTP 401 PermissionDenied: nope" in str(denied) and "https://ai.azure.com/.default as me@example" in str(
        denied
    )
    assert isinstance(throttled, RateLimited) and "in 7 s" in str(throttled)


def test_describe_token_names_the_identity_in_a_jwt() -> None:
    claims = {"upn": "ada@contoso.com", "tid": "tenant-1", "aud": "https://ai.azure.com"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    assert describe_token(f"header.{payload}.signature") == (
        "ada@contoso.com (tenant tenant-1; token audience https://ai.azure.com)"
    )
    assert describe_token("opaque") == "a token that is not a JWT"


def test_the_mcp_token_stays_out_of_reprs() -> None:
    """Settings keep the token a secret; the target built from them must not print it (tracebacks, logs)."""
    settings = HostSettings.for_emulator(
        "http://127.0.0.1:1", "emu", mcp_url="https://bank.example/mcp", mcp_token="mcp-secret-0123456789"
    )
    target = mcp_target(settings)

    assert target.token == "mcp-secret-0123456789"
    assert "mcp-secret" not in repr(target) and "mcp-secret" not in repr(settings)


def test_a_ledger_url_with_its_password_stays_out_of_reprs() -> None:
    """A launched server's PostgreSQL URL, and the settings forwarded to it, carry credentials too."""
    url = "postgresql://bank:pg-secret-0123@db.example/ledger"
    settings = HostSettings.for_emulator("http://127.0.0.1:1", "emu", db_url=url)
    target = replace(mcp_target(settings), server_env={"BANKGATE_TOKENS": "local=tok-secret-0123456789"})

    assert target.db_url == url
    assert "pg-secret" not in repr(target) and "pg-secret" not in repr(settings) and "tok-secret" not in repr(target)
