"""One emulator per test module (agents are named per test, so tests do not see each other's)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from agent_host.emulator import Emulator, FaultConfig


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_faults(emulator: Emulator) -> Iterator[None]:
    """Faults a test arms are cleared for the next one."""
    yield
    emulator.faults.arm(FaultConfig())
    emulator.faults.reset_stats()


@pytest.fixture
def agent_name(request: pytest.FixtureRequest) -> str:
    """A valid agent name unique to the test (1-63 letters, digits and hyphens)."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")
    return cleaned[-63:].strip("-")
