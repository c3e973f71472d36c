"""`bankgate-agent`: the agent host's command line.

Each subcommand is a `Command` in `COMMANDS`; a new one lives in its own
`agent_host/cli/<name>.py` module exposing `configure(parser)` and `run(args) -> int` and is added there.
Only the module of the subcommand being run is imported: the others pull in mcp, azure and uvicorn,
which take seconds to import, and `bankgate-agent --help` should answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version


@dataclass(frozen=True)
class Command:
    name: str
    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's options (importing its module) and route it to its `run`."""
        module = importlib.import_module(f"agent_host.cli.{self.name}")
        module.configure(parser)
        parser.set_defaults(run=module.run)


COMMANDS: tuple[Command, ...] = (
    Command(
        "ask", "Send one request to the Foundry agent; its tool calls run on the MCP server, approvals go to a human."
    ),
    Command("chat", "Chat with the Foundry agent (multi-turn via previous_response_id); /new restarts, /quit ends."),
    Command("demo", "Run the whole lab offline: emulator + MCP server on a temporary ledger, scripted approvals."),
    Command(
        "emulator",
        "Serve an offline Foundry project emulator (rule-based stand-in model, not an LLM) on 127.0.0.1.",
    ),
    Command(
        "serve",
        "Serve the agent over AG-UI with a browser chat at /; approvals become interrupts answered in the client.",
    ),
)


def package_version() -> str:
    """The installed distribution's version (`pyproject.toml` is its single source)."""
    try:
        return version("bankgate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def build_parser(argv: Sequence[str] = (), commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The parser, with options configured for the subcommand named in `argv` only."""
    parser = argparse.ArgumentParser(
        prog="bankgate-agent", description="bankgate's Foundry agent host and its offline emulator."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subcommands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    chosen = next((word for word in argv if not word.startswith("-")), None)
    for command in commands:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        if command.name == chosen:
            command.configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(words).parse_args(words)
    status: int = args.run(args)
    return status
