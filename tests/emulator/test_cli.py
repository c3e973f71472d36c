"""`bankgate-agent emulator` / `python -m agent_host emulator`: in-process through `main(argv)`, and
once as a real `python -m agent_host` process that serves until Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

import httpx2
import pytest

from agent_host.cli.emulator import DEFAULT_PORT, banner
from agent_host.cli.main import main
from agent_host.emulator import Emulator, EmulatorConfig, FaultConfig
from agent_host.settings import DEFAULT_EMULATOR_MODEL


def test_help_describes_the_stand_in(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--help"])

    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "rule-based stand-in model, not an LLM" in out and "--port" in out and "--project" in out


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])

    assert exited.value.code == 2 and "COMMAND" in capsys.readouterr().err


def test_banner_lists_endpoint_token_and_faults() -> None:
    config = EmulatorConfig(project="demo", faults=FaultConfig(rate_limited=2, delay=0.5, target="responses"))
    emulator = Emulator(config)
    try:
        text = banner(emulator)
    finally:
        emulator.stop()

    assert f"export PROJECT_ENDPOINT=http://127.0.0.1:{emulator.port}/api/projects/demo" in text.splitlines()
    assert f"export EMULATOR_TOKEN={config.token}" in text.splitlines()
    assert f"export CHAT_MODEL={DEFAULT_EMULATOR_MODEL}" in text.splitlines()
    assert "rule-based stand-in, not an LLM" in text and "127.0.0.1 only" in text
    assert "first 2 request(s) get 429" in text and "(on responses endpoints only)" in text


def test_invalid_options_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--port", "0", "--project", "no/slash"]) == 2
    assert "invalid project name" in capsys.readouterr().err


def test_python_dash_m_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_host", "emulator", "--port", "0", "--project", "cli-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        settings = {}
        for line in process.stdout:
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep:
                settings[key] = value
            if "CHAT_MODEL" in settings:
                break
        endpoint = settings["PROJECT_ENDPOINT"]
        assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/api/projects/cli-test")
        headers = {"Authorization": f"Bearer {settings['EMULATOR_TOKEN']}"}
        assert httpx2.get(f"{endpoint}/agents/none", headers=headers).status_code == 404
    finally:
        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=10)

    assert process.returncode == 0 and "Emulator stopped." in remaining


def test_the_default_port_is_not_the_mcp_servers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["emulator", "--help"])

    assert DEFAULT_PORT == 8780 and DEFAULT_PORT != 8765, "8765 is bankgate-mcp's HTTP default"
    assert f"(default {DEFAULT_PORT};" in " ".join(capsys.readouterr().out.split())


def test_a_port_in_use_is_one_line_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["emulator", "--port", str(port)])
    result = subprocess.CompletedProcess([], status, *capsys.readouterr())

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"bankgate-agent emulator: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose another --port, or --port 0 for a free one"
    ]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to evaluate the printed block")
def test_the_banner_is_shell_that_sets_the_settings() -> None:
    emulator = Emulator(EmulatorConfig(project="shell", token="tok'en;$(id)"))
    try:
        text = banner(emulator)
    finally:
        emulator.stop()
    script = text + '\nprintf "%s\\n" "$PROJECT_ENDPOINT" "$EMULATOR_TOKEN" "$CHAT_MODEL"'

    shell = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=30, check=True)

    assert shell.stdout.splitlines() == [emulator.endpoint, "tok'en;$(id)", DEFAULT_EMULATOR_MODEL]
    assert shell.stderr == "", "every other line is a comment"
