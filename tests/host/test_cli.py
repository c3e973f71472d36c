"""`bankgate-agent` as a user runs it: plain output, exit codes, no tracebacks.

Most tests call the CLI's `main(argv)` in this process, with the environment, working directory and
stdin a user's shell would give it (`cli`); a real process is used where only one proves the
promise: the console entry point exists, `--help` stays light in a fresh interpreter, exit codes and
azure-identity's log output reach a real shell, and Ctrl-C arrives as a signal.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

import pytest

from agent_host.emulator import Emulator
from mcp_server.audit import reader
from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database

from .conftest import HOST_VARIABLES, Cli
from .helpers import http_mcp_server


def bankgate_agent(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdin a pipe (not a terminal) and only the given host settings."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(HOST_VARIABLES)}
    return subprocess.run(
        [sys.executable, "-m", "agent_host", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean | (env or {}),
        timeout=timeout,
        check=False,
    )


_NEW_LEDGER = {"BANKGATE_CREATE": "true", "BANKGATE_SEED_DEMO": "true"}
"""A named ledger is never created implicitly: the launched server is told to create and seed it."""


def lab_env(emulator: Emulator, tmp_path: Path, agent: str, **extra: str) -> dict[str, str]:
    return {
        "PROJECT_ENDPOINT": emulator.endpoint,
        "EMULATOR_TOKEN": emulator.token,
        "CHAT_MODEL": "gpt-4.1-mini",
        "AGENT_NAME": agent,
        "BANKGATE_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "BANKGATE_DESK": "false",  # a host that cannot ask anyone is denied, not sent to the desk
        **_NEW_LEDGER,
        **extra,
    }


@contextmanager
def opened_ledger(tmp_path: Path) -> Iterator[Database]:
    """The ledger the test's host had its MCP server create, opened here (the host has exited)."""
    db = Database.open(f"sqlite:///{tmp_path / 'ledger.db'}", create=False)
    try:
        yield db
    finally:
        db.close()


def read_balance(tmp_path: Path, account: str) -> Decimal:
    """A balance read straight from the test's ledger."""
    with opened_ledger(tmp_path) as db:
        return Decimal(Ledger(db).balance(account).balance_minor).scaleb(-2)


def audit_outcomes(tmp_path: Path) -> list[str]:
    """The events of the test ledger's audit log, oldest first, as `bankgate-mcp audit tail` lists them."""
    with opened_ledger(tmp_path) as db:
        return [line.event for line in reader.tail(db) if line.event in AUDIT_OUTCOMES]


AUDIT_OUTCOMES = {"requested", "approved", "rejected", "cancelled", "expired", "denied", "executed", "failed"}


def test_demo_runs_the_lab_end_to_end(cli: Cli) -> None:
    result = cli("demo")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "== 1. Balance (no approval needed) ==",
        "agent › ACC-001 has a balance of $5,000.00.",
        "approval: approved (note: demo: rent is expected",
        "← executed: Transferred $250.00 from ACC-001 to ACC-002.",
        "approval: rejected (note: demo: not authorised",
        "Approval required: close_account",
        "The closure of ACC-003 was rejected by the operator; nothing was done.",
        "agent › Weeks later that basil had outgrown its coffee cup",
        "← previous resp_",
        "stream: 15 events (response.created ×1, response.in_progress ×1, response.output_item.added ×2, "
        "response.function_call_arguments.delta ×",
        "response.output_text.delta ×",
        "Created version 2 of bankgate-demo",
        "agent › [v2] ACC-003 has a balance of $120.00.",
        "'version': '1'} (pinned to version 1)",
        "agent › ACC-003 has a balance of $120.00.",
        "  ACC-001: $4,750.00\n  ACC-002: $500.00\n  ACC-003: $120.00",
        "Approval questions answered (scripted): approved, rejected, rejected.",
        "✓ Only the approved transfer moved money",
    ):
        assert expected in out, expected
    assert "\x1b[" not in out, "no terminal: plain text"


@pytest.mark.parametrize(
    "wire", [["--transport", "sdk"], ["--transport", "rest", "--stream"]], ids=["sdk", "rest-stream"]
)
def test_ask_without_a_terminal_denies_every_approval(
    emulator: Emulator, tmp_path: Path, wire: list[str], cli: Cli
) -> None:
    env = lab_env(emulator, tmp_path, f"cli-deny-{wire[1]}")
    result = cli("ask", "Transfer $100 from ACC-001 to ACC-002.", *wire, env=env)

    assert result.returncode == 0, result.stderr
    assert f"{wire[1]} path" in result.stdout and "approver deny" in result.stdout
    assert "Approval question" not in result.stdout, "a host with nobody to ask is asked nothing"
    assert "← denied: " in result.stdout and "No human can be asked to approve it from this client" in result.stdout
    assert "rejected by the operator" not in result.stdout
    assert ("stream: " in result.stdout) is ("--stream" in wire)
    assert read_balance(tmp_path, "ACC-001") == Decimal("5000.00")
    outcomes = audit_outcomes(tmp_path)
    assert "denied" in outcomes and not {"requested", "rejected"} & set(outcomes), outcomes


def test_chat_continues_the_conversation(emulator: Emulator, tmp_path: Path, cli: Cli) -> None:
    script = tmp_path / "answers.txt"
    script.write_text('# one transfer\napprove note="chat test"\n', encoding="utf-8")
    lines = [
        "Transfer $60 from ACC-001 to ACC-003.",
        "What is the balance of ACC-001?",
        "Tell me a one-line story about an astronaut.",
        "/new",
        "Continue the story in one more line.",
        "/quit",
        "What is the balance of ACC-002?",
    ]
    result = cli(
        "chat",
        "--approver",
        f"scripted:{script}",
        "--show-ids",
        "--mcp-protocol",
        "legacy",
        env=lab_env(emulator, tmp_path, "cli-chat"),
        stdin="\n".join(lines) + "\n",
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(2025-11-25) · approver scripted" in out
    assert "approval: approved (note: chat test; scripted (" in out
    assert "agent › ACC-001 has a balance of $4,940.00." in out
    before, after = out.split("New conversation.")
    assert before.count("← previous resp_") == 4, "every response after the first continues the one before"
    assert "← previous" not in after and "There is no story to continue yet" in after
    assert "balance of ACC-002" not in out, "input after /quit is not read"


def test_a_refused_token_is_one_clear_message(emulator: Emulator, tmp_path: Path, cli: Cli) -> None:
    env = lab_env(emulator, tmp_path, "cli-401", EMULATOR_TOKEN="not-the-emulator-token")
    result = cli("ask", "What is the balance of ACC-001?", env=env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "refused the host's token (HTTP 401 PermissionDenied" in result.stderr
    assert "https://ai.azure.com/.default as the emulator dev token" in result.stderr
    assert "accepts only the token it printed" in result.stderr
    assert "az login" not in result.stderr.replace("`az login` play no part", ""), "no Azure advice for the emulator"


def test_configuration_errors_exit_2(cli: Cli) -> None:
    console = cli("ask", "hi", "--approver", "console", env={"PROJECT_ENDPOINT": "x"})
    unset = cli("ask", "hi")

    assert (console.returncode, unset.returncode) == (2, 2)
    assert "--approver console needs a terminal" in console.stderr
    assert "PROJECT_ENDPOINT is not set." in unset.stderr and "bankgate-agent demo" in unset.stderr


def test_an_approval_timeout_no_deadline_can_be_dated_by_is_a_configuration_error(cli: Cli) -> None:
    """The server refuses more than 30 days (its deadlines are dated); the host, reading the same variable, would
    have started and crashed showing the first question's deadline ('inf')."""
    for value, says in (("inf", "a finite number"), ("1e12", "less than or equal to 2592000")):
        result = cli("ask", "hi", env={"PROJECT_ENDPOINT": "x", "BANKGATE_APPROVAL_TIMEOUT": value})

        assert result.returncode == 2, result.stderr
        assert f"BANKGATE_APPROVAL_TIMEOUT: Input should be {says}" in result.stderr


def test_the_console_entry_point_reports_the_installed_version(tmp_path: Path) -> None:
    """The `bankgate-agent` script pyproject declares exists and reaches `main`."""
    script = Path(sys.executable).with_name("bankgate-agent")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=60)

    assert result.returncode == 0 and result.stdout.strip() == f"bankgate-agent {version('bankgate')}"


def test_help_imports_neither_mcp_nor_azure(tmp_path: Path) -> None:
    """What made ``--help`` take seconds: every subcommand's mcp, azure and uvicorn imports."""
    probe = (
        "import sys, contextlib, io\n"
        "from agent_host.cli.main import main\n"
        "for argv in (['--help'], ['ask', '--help'], ['chat', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mcp', 'azure', 'uvicorn', 'openai', 'pydantic'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True)

    assert result.stdout.strip() == "[]", result.stdout


def test_a_wrong_endpoint_path_gets_the_endpoint_shape(emulator: Emulator, tmp_path: Path, cli: Cli) -> None:
    root = emulator.endpoint.removesuffix("/bankgate-dev")  # .../api/projects, without the project
    env = lab_env(emulator, tmp_path, "cli-path", PROJECT_ENDPOINT=root)
    result = cli("ask", "What is the balance of ACC-001?", env=env)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"bankgate-agent: Not found at {root} (No route for POST /api/projects/agents/cli-path/versions.).",
        "  Check PROJECT_ENDPOINT's path: a project endpoint looks like "
        "https://<account>.services.ai.azure.com/api/projects/<project>.",
    ]


def test_against_the_emulator_chat_model_defaults(emulator: Emulator, tmp_path: Path, cli: Cli) -> None:
    env = {k: v for k, v in lab_env(emulator, tmp_path, "cli-no-model").items() if k != "CHAT_MODEL"}
    result = cli("ask", "What is the balance of ACC-001?", env=env)

    assert result.returncode == 0, result.stderr
    assert "agent › ACC-001 has a balance of $5,000.00." in result.stdout


def test_against_azure_a_missing_chat_model_stays_a_configuration_error(tmp_path: Path, cli: Cli) -> None:
    env = {"PROJECT_ENDPOINT": "https://example.services.ai.azure.com/api/projects/p", **_NEW_LEDGER}
    env["BANKGATE_DB_URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = cli("ask", "hi", env=env)

    assert result.returncode == 2
    assert result.stderr.startswith("bankgate-agent: CHAT_MODEL is not set"), result.stderr


def test_azure_identity_warnings_show_only_with_debug(tmp_path: Path) -> None:
    """No Azure sign-in here: DefaultAzureCredential fails, with a warning per credential it tried (real
    processes: what reaches stderr is logging's own handler, which pytest would capture in-process). Both
    reach one MCP server over HTTP (the host connects to it before it signs in), instead of launching one each."""
    token = "azure-test-token-0123456789abcdef"
    with http_mcp_server(tmp_path, token) as (url, _):
        env = {
            "PROJECT_ENDPOINT": "https://example.services.ai.azure.com/api/projects/p",
            "CHAT_MODEL": "gpt-4.1-mini",
            "BANKGATE_MCP_URL": url,
            "BANKGATE_MCP_TOKEN": token,
            "AZURE_CONFIG_DIR": str(tmp_path / "no-azure-cli"),
        }
        quiet = bankgate_agent("ask", "hi", cwd=tmp_path, env=env, timeout=120)
        debug = bankgate_agent("ask", "hi", "--debug", cwd=tmp_path, env=env, timeout=120)

    assert quiet.returncode == debug.returncode == 1
    lines = quiet.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("bankgate-agent: Could not get a token"), quiet.stderr
    assert "Attempted credentials" in debug.stderr and debug.stderr.endswith(quiet.stderr)


def test_ctrl_c_at_the_approval_prompt_cancels_it_and_exits_130(emulator: Emulator, tmp_path: Path) -> None:
    """On a terminal the console approver asks; Ctrl-C there answers the server `cancel`, then stops."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(HOST_VARIABLES)}
    leader, follower = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_host", "ask", "Transfer $100 from ACC-001 to ACC-002."],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=clean | lab_env(emulator, tmp_path, "cli-ctrl-c") | {"PYTHONFAULTHANDLER": "1"},
        start_new_session=True,  # its own process group, as a shell gives a foreground job
        # A shell's job has Ctrl-C at its default; a pytest-xdist worker ignores SIGINT, and an ignored
        # signal stays ignored across exec (Python then installs no KeyboardInterrupt handler).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(follower)
    screen = bytearray()
    prompted = threading.Event()

    def read_terminal() -> None:
        while True:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the process closed the terminal
                return
            if not chunk:
                return
            screen.extend(chunk)
            if b"Approve this action?" in screen:
                prompted.set()

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        assert prompted.wait(120), bytes(screen).decode(errors="replace")
        assert b"s left)" in screen and b"Answer within " in screen, "the deadline is shown"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process group
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # with PYTHONFAULTHANDLER, every thread's stack on stderr
            _, stderr = process.communicate(timeout=10)
            pytest.fail("the host did not exit after Ctrl-C; where it was:\n" + stderr.decode(errors="replace"))
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(5)
        os.close(leader)

    assert process.returncode == 130
    assert stderr.decode().splitlines() == [
        "bankgate-agent: Interrupted: the approval for transfer_funds was cancelled (the server recorded: cancelled)."
    ]
    assert audit_outcomes(tmp_path) == ["requested", "cancelled"]


def test_a_tool_timeout_within_the_approval_timeout_is_a_configuration_error(cli: Cli) -> None:
    """The host gave up on a 2025-11-25 call waiting for its answer, and stopped polling the desk, when its tool
    timeout ran out: before the deadline the question stated."""
    env = {"PROJECT_ENDPOINT": "x", "BANKGATE_APPROVAL_TIMEOUT": "600", "BANKGATE_AGENT_TOOL_TIMEOUT": "330"}
    result = cli("ask", "hi", env=env)

    assert result.returncode == 2, result.stderr
    assert "BANKGATE_AGENT_TOOL_TIMEOUT (330 s) must be longer than BANKGATE_APPROVAL_TIMEOUT (600 s)" in result.stderr
    assert "Traceback" not in result.stderr
