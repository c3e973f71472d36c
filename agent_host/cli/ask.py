"""`bankgate-agent ask "..."`: one request to the agent, its tool calls run through MCP."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from agent_host.cli.common import add_host_options, approver_from, run_async, settings_from

if TYPE_CHECKING:
    from agent_host.display import Display


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request", help='what to ask, e.g. "Transfer $50 from ACC-001 to ACC-002."')
    add_host_options(parser)


def run(args: argparse.Namespace) -> int:
    from agent_host.display import Display
    from agent_host.host import open_host

    async def main(display: Display) -> int:
        settings = settings_from(args)
        approver = approver_from(args, display)
        async with open_host(settings, display, approver) as host:
            display.note(host.describe())
            display.user(args.request)
            turn = await host.conversation().send(args.request)
        return 1 if turn.limited else 0

    return run_async(main, Display(show_ids=args.show_ids), debug=args.debug)
