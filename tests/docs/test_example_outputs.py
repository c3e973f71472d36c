"""What the README shows the server and its CLI print is what they print today.

An example is read as a template: its dates, times and approval references stand for any, and `…` for
whatever the README leaves out of that line; everything else must be as shown, line for line.
"""

import io
import re
import shlex
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from rich.console import Console

from agent_host.approvers import Question
from agent_host.cli.emulator import DEFAULT_PORT, banner
from agent_host.display import Display
from agent_host.emulator import Emulator, EmulatorConfig
from mcp_server.app import build_server, open_state
from mcp_server.settings import Settings
from policy.testing import ScriptedResponder, reject
from tests.docs.markdown import Block, blocks, text_of
from tests.server.cli_process import McpCli, in_process_cli

pytestmark = pytest.mark.anyio

_VARYING = {
    r"\d{4}-\d\d-\d\d": r"\d{4}-\d\d-\d\d",
    r"\d\d:\d\d:\d\d": r"\d\d:\d\d:\d\d",
    r"APR-[0-9A-F]{10}": r"APR-[0-9A-F]{10}",
    "…": r"[^\n]*",
}
_SPLIT = re.compile("(" + "|".join(_VARYING) + ")")


def shows(example: str, actual: str) -> bool:
    """Whether `actual` is what `example` shows (see the module's docstring)."""
    parts = []
    for piece in _SPLIT.split(example):
        kind = next((k for k in _VARYING if re.fullmatch(k, piece)), None)
        parts.append(_VARYING[kind] if kind else re.escape(piece))
    return re.fullmatch("".join(parts), actual) is not None


def readme_block(first_line: str) -> Block:
    (block,) = [b for b in blocks("README.md") if b.text.startswith(first_line)]
    return block


def readme_quote(opening: str) -> str:
    """An italic quotation in the README's prose (`*"…"*`) beginning with `opening`, on one line."""
    found = re.search(r'\*"(' + re.escape(opening) + r'.*?)"\*', text_of("README.md"), re.DOTALL)
    assert found is not None, opening
    return " ".join(found.group(1).split())


def _assert_shows(block: Block, actual: str) -> None:
    assert shows(block.text, actual), f"{block.where} shows:\n{block.text}\nthe code prints:\n{actual}"


# --- the questions ----------------------------------------------------------------------------------------


def _settings(tmp_path: Path, principal: str) -> Settings:
    """The demo ledger under the shipped policy, as the README's examples have it."""
    return Settings(db_url=f"sqlite:///{tmp_path}/ledger.db", principal=principal, _env_file=None)  # type: ignore[call-arg]


async def _asked(tmp_path: Path, principal: str, tool: str, arguments: dict[str, Any]) -> str:
    settings = _settings(tmp_path, principal)
    server = build_server(open_state(settings, create=True, seed=True), settings)
    responder = ScriptedResponder(reject())
    async with Client(server, elicitation_callback=responder) as client:
        await client.call_tool(tool, arguments)
    (question,) = responder.questions
    return question.message


async def test_the_transfer_question_is_as_shown(tmp_path: Path) -> None:
    arguments = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "500"}
    _assert_shows(
        readme_block("Approval required: transfer_funds"),
        await _asked(tmp_path, "alice", "transfer_funds", arguments),
    )


async def test_the_memo_line_is_as_shown(tmp_path: Path) -> None:
    arguments = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5", "memo": 'rent for "March"'}
    question = await _asked(tmp_path, "alice", "transfer_funds", arguments)
    shown = readme_block("Memo (written by the requester):")
    assert shown.text in question.splitlines(), question


async def test_the_close_question_is_as_shown(tmp_path: Path) -> None:
    arguments = {"account_id": "ACC-003", "sweep_to": "ACC-002"}
    _assert_shows(
        readme_block("Approval required: close_account"), await _asked(tmp_path, "carol", "close_account", arguments)
    )


async def _sent_to_the_desk(tmp_path: Path) -> dict[str, Any]:
    """What a client without forms (Claude Desktop) gets for a transfer: the desk's link."""
    settings = _settings(tmp_path, "alice")
    server = build_server(open_state(settings, create=True, seed=True), settings)
    async with Client(server) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "250"}
        )
    content: dict[str, Any] | None = result.structured_content
    assert content is not None and content["status"] == "pending_approval"
    return content


async def test_the_desk_link_is_as_shown(tmp_path: Path) -> None:
    message = (await _sent_to_the_desk(tmp_path))["message"]
    shown = readme_quote("An approver must approve this transfer_funds")
    assert shows(_any_port(shown), _any_port(message)), f"README.md shows:\n{shown}\nthe server says:\n{message}"


async def test_the_host_shows_a_desk_link_as_shown(tmp_path: Path) -> None:
    """`bankgate-agent ask` at a terminal (output piped): the server's message, the link and the deadline."""
    pending = await _sent_to_the_desk(tmp_path)
    deadline = datetime.fromisoformat(pending["expires_at"]).timestamp()
    printed = io.StringIO()
    display = Display(Console(file=printed, force_terminal=False, width=100))
    display.approval_asked(Question(pending["message"], (), deadline, url=pending["approval_url"]), "console")
    _assert_shows(readme_block("+-- Approval at the desk"), _any_port(printed.getvalue().rstrip("\n")))


def _any_port(text: str) -> str:
    """`text` on the desk's default port, as the README shows it (a taken port falls back to another)."""
    return re.sub(r"localhost:\d+", "localhost:8766", text)


# --- the CLI ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> McpCli:
    """`bankgate-mcp` in this process, in an empty folder with a user data directory of its own."""
    return in_process_cli(tmp_path, monkeypatch, capsys)


@pytest.fixture
def demo_cli(cli: McpCli) -> McpCli:
    """`cli` with a demo ledger, made as the README makes one, named by BANKGATE_DB_URL."""
    assert cli("admin", "init", "--db", "sqlite:///ledger.db", "--seed-demo").returncode == 0
    return lambda *args, **env: cli(*args, **{"BANKGATE_DB_URL": "sqlite:///ledger.db", **env})


def _runs(block: Block) -> list[tuple[list[str], str]]:
    """Each command of an example block (after `$ `, or its first line) and the output shown under it."""
    runs: list[tuple[list[str], str]] = []
    for line in block.text.splitlines():
        if line.startswith("$ ") or not runs:
            runs.append((shlex.split(line.removeprefix("$ "))[1:], ""))
        else:
            args, shown = runs[-1]
            runs[-1] = (args, f"{shown}\n{line}" if shown else line)
    return runs


def test_policy_explain_prints_what_is_shown(demo_cli: McpCli) -> None:
    block = readme_block("$ bankgate-mcp policy explain")
    [(args, shown)] = _runs(block)
    ran = demo_cli(*args)
    assert ran.returncode == 0, ran.stderr
    assert shows(shown, ran.stdout.rstrip("\n")), f"{block.where} shows:\n{shown}\nit prints:\n{ran.stdout}"


@pytest.mark.parametrize("first_line", ["bankgate-mcp approvers add", "bankgate-mcp approvers link"])
def test_approvers_commands_print_what_is_shown(demo_cli: McpCli, first_line: str) -> None:
    block = readme_block(first_line)
    [(args, shown)] = _runs(block)
    if args[1] == "link":
        assert demo_cli("approvers", "add", args[2]).returncode == 0
    ran = demo_cli(*args)
    assert ran.returncode == 0, ran.stderr
    assert shows(shown, ran.stdout.rstrip("\n")), f"{block.where} shows:\n{shown}\nit prints:\n{ran.stdout}"


ERRORS = _runs(readme_block("$ bankgate-mcp audit verify --db sqlite:///typo.db"))


@pytest.mark.parametrize(("args", "shown"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_each_error_is_the_line_shown(cli: McpCli, args: list[str], shown: str) -> None:
    with socket.socket() as taken:  # for the example of a port in use: the README's, or a free one held here
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ran = cli(*args, BANKGATE_PORT=port)
    assert ran.returncode == 2
    assert shows(shown.replace("8765", port), ran.stderr.rstrip("\n")), f"README shows:\n{shown}\nstderr:\n{ran.stderr}"


def test_the_emulator_prints_the_lines_shown() -> None:
    """`bankgate-agent emulator`'s banner, on its default port; the README's closing `# ...` stands for
    the comment lines that follow."""
    block = readme_block("# bankgate Foundry emulator")
    *shown, more = block.text.splitlines()
    emulator = Emulator(EmulatorConfig())
    try:
        printed = banner(emulator).replace(f":{emulator.port}/", f":{DEFAULT_PORT}/").splitlines()
    finally:
        emulator.stop()
    assert more == "# ..."
    assert printed[: len(shown)] == shown, f"{block.where} shows:\n{block.text}\nit prints:\n" + "\n".join(printed)
    assert all(line.startswith("# ") for line in printed[len(shown) :])
