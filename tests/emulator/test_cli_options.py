"""The emulator command's options for the run lifetime and the wire shape."""

from __future__ import annotations

import pytest

from agent_host.cli.emulator import _describe_faults
from agent_host.cli.main import main
from agent_host.emulator import FaultConfig


def test_a_run_lifetime_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--port", "0", "--run-lifetime", "0"]) == 2
    assert "the run lifetime must be > 0 seconds" in capsys.readouterr().err


def test_a_wire_shape_is_listed_with_the_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert _describe_faults(FaultConfig(shape="calls_without_id")) == "function calls sent as calls_without_id"
    with pytest.raises(SystemExit):
        main(["emulator", "--wire-shape", "sideways"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err
