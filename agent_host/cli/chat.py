"""`bankgate-agent chat`: a multi-turn conversation, each turn continuing the last response.

Lines come from the terminal, or from stdin when it is not one (and are echoed, so a piped run
reads as a transcript). `/new` starts a fresh conversation; `/quit` or end of input ends it.
An error in one turn is reported and the conversation goes on.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from agent_host.cli.common import add_host_options, approver_from, run_async, settings_from
from agent_host.errors import HostError, Interrupted
from agent_host.terminal import interruptible, wait_for_input

if TYPE_CHECKING:
    from agent_host.display import Display

_PROMPT = "you › "


def configure(parser: argparse.ArgumentParser) -> None:
    add_host_options(parser)


def run(args: argparse.Namespace) -> int:
    from agent_host.display import Display
    from agent_host.host import open_host

    async def main(display: Display) -> int:
        settings = settings_from(args)
        approver = approver_from(args, display)
        interactive = sys.stdin.isatty()
        async with open_host(settings, display, approver) as host:
            display.note(host.describe())
            display.note("Type a request; /new starts a new conversation, /quit (or Ctrl-D) ends.")
            conversation = host.conversation()
            while (line := _read_line(interactive)) is not None:
                text = line.strip()
                if text in ("/quit", "/exit"):
                    break
                if text == "/new":
                    conversation = host.conversation()
                    display.note("New conversation.")
                    continue
                if not text:
                    continue
                if not interactive:
                    display.user(text)
                try:
                    await conversation.send(text)
                except Interrupted:
                    raise
                except HostError as error:
                    display.error(error)
        return 0

    return run_async(main, Display(show_ids=args.show_ids), debug=args.debug)


def _read_line(interactive: bool) -> str | None:
    """The next line, or `None` at end of input (blocking the loop: see `agent_host.terminal`)."""
    if interactive:
        try:
            with interruptible():
                sys.stdout.write(_PROMPT)
                sys.stdout.flush()
                wait_for_input()
                return input()
        except EOFError:
            return None
    line = sys.stdin.readline()
    return line or None
