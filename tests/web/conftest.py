"""The host tests' fixtures: one emulator per module, agents named per test."""

from tests.host.conftest import _no_faults, agent_name, cli, emulator

__all__ = ["_no_faults", "agent_name", "cli", "emulator"]
