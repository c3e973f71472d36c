"""``bankgate-agent emulator`` / ``python -m agent_host emulator``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx2
import pytest

from agent_host.cli import main
from agent_host.cli_emulator import banner
from agent_host.emulator import Emulator, EmulatorConfig, FaultConfig


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

    assert f"PROJECT_ENDPOINT=http://127.0.0.1:{emulator.port}/api/projects/demo" in text.splitlines()
    assert f"EMULATOR_TOKEN={config.token}" in text.splitlines()
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
            key, sep, value = line.strip().partition("=")
            if sep:
                settings[key] = value
            if "EMULATOR_TOKEN" in settings:
                break
        endpoint = settings["PROJECT_ENDPOINT"]
        assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/api/projects/cli-test")
        headers = {"Authorization": f"Bearer {settings['EMULATOR_TOKEN']}"}
        assert httpx2.get(f"{endpoint}/agents/none", headers=headers).status_code == 404
    finally:
        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=10)

    assert process.returncode == 0 and "Emulator stopped." in remaining
