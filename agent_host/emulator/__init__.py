"""An offline, wire-faithful emulator of a Foundry project (agents + Responses API).

Its model is a deterministic, rule-based stand-in, not an LLM. Start one in-process with
``async with running_emulator() as emu`` (or ``with Emulator() as emu``), or from the command line
with ``bankgate-agent emulator``; point ``AIProjectClient`` at ``emu.endpoint`` with
``emu.credential()`` and a :class:`LoopbackBearerTokenPolicy`.
"""

from .app import create_app
from .auth import AUDIENCE, DEV_TOKEN
from .credentials import (
    AsyncDevTokenCredential,
    AsyncLoopbackBearerTokenPolicy,
    DevTokenCredential,
    LoopbackBearerTokenPolicy,
    is_loopback_url,
)
from .faults import FaultConfig, FaultInjector, FaultStats, WireShape
from .server import DEFAULT_PROJECT, HOST, Emulator, EmulatorConfig, running_emulator

__all__ = [
    "AUDIENCE",
    "DEFAULT_PROJECT",
    "DEV_TOKEN",
    "HOST",
    "AsyncDevTokenCredential",
    "AsyncLoopbackBearerTokenPolicy",
    "DevTokenCredential",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "FaultInjector",
    "FaultStats",
    "LoopbackBearerTokenPolicy",
    "WireShape",
    "create_app",
    "is_loopback_url",
    "running_emulator",
]
