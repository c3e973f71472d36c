"""How `serve` starts and stops when things are not as expected: a taken port, a terminal on stdin,
and logs a deployment can parse."""

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.server.cli_process import McpCli, clean_env
from tests.support import free_port


def test_a_taken_port_is_one_line_with_a_hint_and_opens_nothing(tmp_path: Path, cli: McpCli) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'bank.db'}"
        done = cli("serve", "--transport", "http", "--port", str(port), "--no-auth", "--db", url, "--create")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"bankgate-mcp: port {port} on 127.0.0.1 is already in use (another bankgate-mcp, or the Foundry "
        "emulator?); choose another with --port or BANKGATE_PORT"
    )
    assert not (tmp_path / "bank.db").exists()


READS_STDIN = "reading stdin: a worker thread waits"
"""What a stdio server logs (at DEBUG) as its reader thread enters its first read of stdin (`stdio_wire.KeptLines`):
a SIGINT sent before it would stop the process even if one sent during the read did not."""


def test_stdio_in_a_terminal_says_it_waits_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    ledger = f"sqlite:///{tmp_path / 'bank.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--db", ledger, "--create", "--log-level", "DEBUG"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdin=terminal,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    try:
        assert process.stderr is not None
        said: list[str] = []  # start-up log lines (ledger, audit key, policy), the notice, then the read begun
        while not said or (said[-1] and READS_STDIN not in said[-1]):
            said.append(process.stderr.readline())
        assert any("waiting for an MCP client on stdin" in line and "Ctrl-C" in line for line in said), said
        assert READS_STDIN in said[-1], said  # past the start, into the blocking read SIGINT cannot cut
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130  # without anyone pressing Enter
        rest = process.stderr.read()
        assert "Traceback" not in rest and "stopped" in rest
    finally:
        process.kill()
        process.wait()
        os.close(controller)


def test_json_logs_are_one_object_per_line_for_bankgate_and_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    command = [sys.executable, "-m", "mcp_server", "serve", "--transport", "http", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--no-auth", "--db", url, "--create", "--log-format", "json"],
            cwd=tmp_path,
            env=clean_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx2.TransportError:
                    assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(15)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    loggers = {record["logger"] for record in records}
    assert "bankgate" in loggers and any(name.startswith("uvicorn") for name in loggers), loggers
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)


def test_a_bad_request_state_ring_is_named_and_opens_nothing(tmp_path: Path, cli: McpCli) -> None:
    """A replica's ring with a key listed twice (or too short) is refused naming the setting, before a ledger
    is created: not the SDK's bare 'keys[1]' after the database was opened."""
    key = "a" * 64
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    done = cli(
        "serve", "--transport", "http", "--stateless", "--no-auth", "--db", url, "--create",
        BANKGATE_REQUEST_STATE_KEYS=f"{key},{key}",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "bankgate-mcp: configuration: request_state_keys: Value error, keys[1] duplicates an earlier ring key"
    )
    assert not (tmp_path / "bank.db").exists()


def test_a_bad_request_state_ring_is_not_shown_even_with_debug(tmp_path: Path, cli: McpCli) -> None:
    """--debug prints the traceback for a bug report: the refused ring (its good keys too) must not be in it."""
    good, short = "b" * 64, "short-but-secret"
    done = cli("serve", "--transport", "http", "--no-auth", "--debug", BANKGATE_REQUEST_STATE_KEYS=f"{good},{short}")
    assert done.returncode == 2 and "keys[1] is 16 bytes" in done.stderr
    assert good not in done.stderr and short not in done.stderr


@pytest.mark.parametrize(
    ("flag", "env", "says"),
    [
        (("--approval-timeout", "1e12"), {}, "less than or equal to 2592000"),
        ((), {"BANKGATE_APPROVAL_TIMEOUT": "inf"}, "a finite number"),
    ],
)
def test_an_approval_timeout_no_deadline_can_be_dated_by_is_named_and_opens_nothing(
    tmp_path: Path, cli: McpCli, flag: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    """A timeout of 31,700 years served, then every gated call failed ('Error executing tool') after its
    approval was stored, its deadline past any date; 'inf' failed later, in the SDK, not naming the setting."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    done = cli("serve", "--db", url, "--create", *flag, **env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"bankgate-mcp: configuration: approval_timeout: Input should be {says}"
    )
    assert not (tmp_path / "bank.db").exists()


@pytest.mark.parametrize(("interval", "says"), [("inf", "a finite number"), ("7200", "less than or equal to 3600")])
def test_a_health_interval_that_never_probes_again_is_named_and_opens_nothing(
    tmp_path: Path, cli: McpCli, interval: str, says: str
) -> None:
    """'inf' was served: the first probe's answer stood for good, so /readyz said "ok" after the database died."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    done = cli("serve", "--transport", "http", "--no-auth", "--db", url, "--create", BANKGATE_HEALTH_INTERVAL=interval)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"bankgate-mcp: configuration: health_interval: Input should be {says}"
    )
    assert not (tmp_path / "bank.db").exists()


@pytest.mark.parametrize("stream", ["stdin", "stdout"])
def test_stdio_with_a_standard_stream_closed_is_one_line_and_opens_nothing(tmp_path: Path, stream: str) -> None:
    """Started with fd 0 or 1 closed, Python has no `sys.stdin`/`sys.stdout`: it was `unexpected AttributeError`."""
    fd = 0 if stream == "stdin" else 1
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcp_server",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'bank.db'}",
            "--create",
            "--no-desk",
        ],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(fd),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"bankgate-mcp: {stream} is closed"), done.stderr
    assert "--transport http" in done.stderr and "\n" not in done.stderr.strip()
    assert not (tmp_path / "bank.db").exists()
