"""``bankgate-agent``: the agent host's command line.

Each subcommand is a :class:`Command` in :data:`COMMANDS`; a new one lives in its own
``cli_<name>.py`` module exposing ``configure(parser)`` and ``run(args) -> int`` and is added there.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import cli_ask, cli_chat, cli_demo, cli_emulator, cli_serve


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command("ask", cli_ask.HELP, cli_ask.configure, cli_ask.run),
    Command("chat", cli_chat.HELP, cli_chat.configure, cli_chat.run),
    Command("demo", cli_demo.HELP, cli_demo.configure, cli_demo.run),
    Command("emulator", cli_emulator.HELP, cli_emulator.configure, cli_emulator.run),
    Command("serve", cli_serve.HELP, cli_serve.configure, cli_serve.run),
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bankgate-agent", description="bankgate's Foundry agent host and its offline emulator."
    )
    subcommands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for command in commands:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status
