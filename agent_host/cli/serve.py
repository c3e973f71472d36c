"""`bankgate-agent serve`: the web front end (AG-UI endpoint + browser chat) for the Foundry agent.

Approvals are answered in the web client, so `--approver` does not apply. `--demo` needs no
configuration: it starts the offline emulator and an MCP server on a temporary seeded ledger.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from agent_host.cli.common import add_host_options, run_async, settings_from
from agent_host.cli.offline import offline_lab
from agent_host.display import Display
from agent_host.errors import ConfigurationError
from agent_host.host import open_host
from agent_host.mcp_link import McpTarget
from agent_host.settings import HostSettings
from agent_host.web.interrupts import InterruptStore
from agent_host.web.runs import RunDriver
from agent_host.web.server import WebOptions, running_web

TOKEN_ENV = "BANKGATE_WEB_TOKEN"
DEFAULT_PORT = 8790
"""Neither the MCP server's HTTP default (8765) nor the emulator's (8780): all three run side by side."""


def configure(parser: argparse.ArgumentParser) -> None:
    web = parser.add_argument_group("web front end")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    web.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    web.add_argument("--token", help=f"bearer token the API requires (needed off loopback; {TOKEN_ENV})")
    web.add_argument("--allowed-host", action="append", default=[], metavar="NAME", help="extra Host name to answer to")
    web.add_argument(
        "--approval-window", type=float, default=300.0, metavar="SECONDS", help="time to answer an interrupt"
    )
    web.add_argument("--demo", action="store_true", help="offline: the emulator and a temporary demo ledger")
    add_host_options(parser, approver=False)


def run(args: argparse.Namespace) -> int:
    async def main(display: Display) -> int:
        if args.approver:
            raise ConfigurationError("serve answers approvals in the web client; leave out --approver.")
        if not 0 < args.approval_window < math.inf:  # nan too
            raise ConfigurationError("--approval-window must be a positive number of seconds.")
        options = WebOptions(args.host, args.port, args.token or os.environ.get(TOKEN_ENV), args.allowed_host)
        options.check()
        driver = RunDriver(InterruptStore(args.approval_window))
        async with AsyncExitStack() as stack:
            listener = stack.enter_context(options.listen())  # a taken port is refused before the lab starts
            settings, target = await stack.enter_async_context(_agent(args, display))
            if args.approval_window >= settings.tool_timeout:
                raise ConfigurationError(
                    f"--approval-window ({args.approval_window:g} s) must be shorter than the tool timeout "
                    f"({settings.tool_timeout:g} s): on 2025-11-25 the MCP call stays open while the client decides.",
                    "Lower --approval-window, or raise the tool timeout (BANKGATE_AGENT_TOOL_TIMEOUT).",
                )
            host = await stack.enter_async_context(open_host(settings, display, driver, target))
            web = await stack.enter_async_context(running_web(host, driver, options, listener))
            display.note(host.describe())
            fragment = f"#token={options.token}" if options.token else ""
            display.line("Web chat: ", f"{web.url}/{fragment}  ·  AG-UI endpoint: POST {web.url}/agent", "bold green")
            await web.stopped.wait()
        return 0

    return run_async(main, Display(show_ids=args.show_ids))


@asynccontextmanager
async def _agent(args: argparse.Namespace, display: Display) -> AsyncIterator[tuple[HostSettings, McpTarget | None]]:
    """The configured agent and MCP server, or with `--demo` the emulator and a temporary ledger."""
    if not args.demo:
        yield settings_from(args), None
        return
    async with offline_lab("bankgate-web-", "bankgate-web") as lab:
        display.note("Demo: offline emulator (a rule-based stand-in, not an LLM), seeded ledger ACC-001..ACC-003.")
        yield lab
