"""Bad settings and options of `bankgate-agent`: a configuration error (exit 2) naming the setting, no
traceback, and nothing started or written (no MCP server launched: no ledger at the named URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_host.cli.main import COMMANDS, build_parser
from agent_host.settings import DEFAULT_AGENT_NAME, HostSettings
from tests.support import unexplained_options

from .conftest import Cli

UNREACHABLE = {"PROJECT_ENDPOINT": "http://127.0.0.1:9/api/projects/p", "CHAT_MODEL": "m"}
"""A loopback project nobody serves: reaching it is a run-time error (exit 1), never a configuration one."""


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("ask", "hi"), {"BANKGATE_AGENT_TOOL_TIMEOUT": "inf"}, "BANKGATE_AGENT_TOOL_TIMEOUT: Input should be"),
        (("ask", "hi"), {"BANKGATE_MCP_URL": "javascript:alert(1)"}, "BANKGATE_MCP_URL: Value error, must be an http"),
        (("ask", "hi"), {"BANKGATE_APPROVAL_TIMEOUT": "1e308"}, "BANKGATE_APPROVAL_TIMEOUT: Input should be less than"),
        (("ask", "hi", "--mcp-url", "javascript:x"), {}, "BANKGATE_MCP_URL: Value error, must be an http"),
        (("ask", "hi"), {"BANKGATE_AGENT_MAX_ROUNDS": "-1"}, "BANKGATE_AGENT_MAX_ROUNDS: Input should be greater"),
        (("serve", "--approval-window", "nan"), {}, "--approval-window must be a positive number"),
        (("serve", "--port", "99999"), {}, "--port must be from 0 to 65535"),
        (("serve", "--port", "-1"), {}, "--port must be from 0 to 65535"),
    ],
    ids=[
        "tool timeout inf", "mcp url scheme", "approval timeout huge", "mcp url option", "max rounds", "window nan",
        "port too high", "port negative",
    ],
)  # fmt: skip
def test_a_bad_setting_is_a_configuration_error_before_anything_starts(
    tmp_path: Path, cli: Cli, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    ledger = tmp_path / "ledger.db"
    named = {"BANKGATE_DB_URL": f"sqlite:///{ledger}", "BANKGATE_CREATE": "true", "BANKGATE_DESK": "false"}
    done = cli(*args, "--approver", "deny", env=UNREACHABLE | named | env) if args[0] == "ask" else cli(*args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert not ledger.exists()


def test_a_dotenv_not_utf8_is_a_configuration_error(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / ".env").write_bytes(b"AGENT_NAME=r\xe9mi\n")  # Latin-1, as an old editor saves it
    done = cli("ask", "hi", "--approver", "deny", env=UNREACHABLE)
    assert done.returncode == 2, done.stderr
    assert ".env is not UTF-8 text" in done.stderr and "Traceback" not in done.stderr


def test_the_emulators_settings_never_read_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo` and `serve --demo` need no configuration: a .env they ignore cannot stop them either."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b"AGENT_NAME=r\xe9mi\n")
    assert HostSettings.for_emulator("http://127.0.0.1:9/api/projects/p", "t").agent_name == DEFAULT_AGENT_NAME


@pytest.mark.parametrize("command", [command.name for command in COMMANDS])
def test_every_help_lists_and_explains_every_option(command: str) -> None:
    """`bankgate-agent COMMAND --help` lists each option with a line saying what it is."""
    assert unexplained_options(build_parser([command]), "bankgate-agent") == {}
