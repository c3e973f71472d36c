"""An offline, wire-faithful emulator of a Foundry project (agents + Responses API).

Its model is a deterministic, rule-based stand-in, not an LLM. Start one in-process with
`async with running_emulator() as emu` (or `with Emulator() as emu`), or from the command line
with `bankgate-agent emulator`; point `AIProjectClient` at `emu.endpoint` with
`emu.credential()` and a `LoopbackBearerTokenPolicy` (both from `agent_host.foundry.dev_token`,
the client side of the emulator's dev-token scheme).
"""

from agent_host.emulator.app import create_app
from agent_host.emulator.faults import FaultConfig, FaultInjector, FaultStats, WireShape
from agent_host.emulator.server import DEFAULT_PROJECT, HOST, Emulator, EmulatorConfig, running_emulator

__all__ = [
    "DEFAULT_PROJECT",
    "HOST",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "FaultInjector",
    "FaultStats",
    "WireShape",
    "create_app",
    "running_emulator",
]
