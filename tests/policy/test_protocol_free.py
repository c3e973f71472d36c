"""The gate is protocol-free: it and everything it imports load with the MCP SDK unavailable."""

import subprocess
import sys
import textwrap

PROTOCOL_FREE = (
    "policy.gate",
    "policy.settlement",
    "policy.approval_states",
    "policy.verdict",
    "policy.store",
    "policy.loader",
)

_BLOCKED = textwrap.dedent(
    """
    import importlib, sys

    class NoProtocol:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("mcp", "mcp_types"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, NoProtocol())
    for module in sys.argv[1:]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            print(f"{module}: {exc}")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("mcp", "mcp_types"))
    if leaked:
        print("loaded:", ", ".join(leaked))
    """
)


def imported_without_mcp(*modules: str) -> str:
    """What goes wrong importing `modules` in a fresh interpreter where `mcp` cannot be imported."""
    done = subprocess.run([sys.executable, "-c", _BLOCKED, *modules], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_gate_and_everything_it_imports_need_no_mcp() -> None:
    assert imported_without_mcp(*PROTOCOL_FREE) == ""


def test_the_adapter_is_where_mcp_is_used() -> None:
    """The check can fail: the MCP adapter does not load without the SDK."""
    adapter = ("policy.mcp.round", "policy.mcp.form", "policy.mcp.asked", "policy.mcp.empty_accept")
    problems = imported_without_mcp(*adapter)
    assert problems.count("blocked: mcp") == len(adapter)
