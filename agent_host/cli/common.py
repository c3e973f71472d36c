"""Options and error handling shared by `ask`, `chat` and `serve`.

Imports of mcp, azure and pydantic happen inside the functions that run a command, so that
building the parser (`--help`) stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent_host.errors import ConfigurationError, HostError

if TYPE_CHECKING:
    from agent_host.approvers import Approver
    from agent_host.display import Display
    from agent_host.settings import HostSettings


def add_host_options(parser: argparse.ArgumentParser, *, approver: bool = True) -> None:
    """The options of every command that talks to an agent (each also has an environment setting); `approver`:
    whether `--approver` is offered (`serve` answers approvals in the web client: it refuses one, naming why, and its
    help leaves it out)."""
    wire = parser.add_argument_group("agent and wire path")
    wire.add_argument("--transport", choices=("sdk", "rest"), help="azure-ai-projects SDK (default) or raw REST")
    wire.add_argument("--stream", action="store_true", default=None, help="stream the answers (Server-Sent Events)")
    wire.add_argument("--agent", dest="agent_name", metavar="NAME", help="agent name (AGENT_NAME)")
    wire.add_argument("--agent-version", metavar="N", help="run this existing version of the agent")
    wire.add_argument(
        "--existing-agent", action="store_true", default=None, help="run the agent's latest version as it is"
    )
    wire.add_argument(
        "--no-strict", dest="strict_tools", action="store_false", default=None, help="send tool schemas as written"
    )
    wire.add_argument("--max-rounds", type=int, metavar="N", help="tool-call rounds allowed per request (default 8)")
    wire.add_argument("--show-ids", action="store_true", help="show response ids and their previous_response_id")
    mcp = parser.add_argument_group("MCP server (default: launch `bankgate-mcp serve` over stdio)")
    mcp.add_argument("--mcp-url", metavar="URL", help="Streamable HTTP endpoint instead (BANKGATE_MCP_URL)")
    mcp.add_argument("--mcp-token", metavar="TOKEN", help="bearer token for --mcp-url (BANKGATE_MCP_TOKEN)")
    mcp.add_argument("--mcp-protocol", choices=("auto", "legacy"), help="auto (2026-07-28) or legacy (2025-11-25)")
    mcp.add_argument("--db", dest="db_url", metavar="URL", help="ledger of the launched server (BANKGATE_DB_URL)")
    parser.add_argument(
        "--approver",
        metavar="console|deny|scripted:FILE",
        help=(
            "who answers approval questions (default: console on a terminal, deny otherwise); a scripted FILE "
            "has one answer per line: approve [note=TEXT] [confirm=VALUE], reject [note=TEXT], decline or cancel"
        )
        if approver
        else argparse.SUPPRESS,
    )
    parser.add_argument(
        "--debug", action="store_true", help="show azure-identity's warnings (hidden below ERROR otherwise)"
    )


def settings_from(args: argparse.Namespace) -> HostSettings:
    """Environment and `.env` settings, overridden by the options given."""
    from pydantic import ValidationError

    from agent_host.settings import HostSettings

    overrides = {
        name: getattr(args, name) for name in HostSettings.model_fields if getattr(args, name, None) is not None
    }
    try:
        return HostSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(_problem(e["loc"], e["msg"], HostSettings) for e in error.errors())
        raise ConfigurationError(f"Invalid configuration: {problems}.") from None
    except UnicodeDecodeError:  # only .env is read as text here (variables with such bytes are named)
        raise ConfigurationError(".env is not UTF-8 text.", "Save it as UTF-8.") from None


def _problem(loc: tuple[int | str, ...], message: str, settings: type[HostSettings]) -> str:
    """One setting's problem, named by its variable (an option overriding it says which in its help); a check
    across settings names them in its message."""
    if not loc:
        return message.removeprefix("Value error, ")
    first, *rest = map(str, loc)
    return f"{'.'.join([settings.variable_of(first), *rest])}: {message}"


def approver_from(args: argparse.Namespace, display: Display) -> Approver:
    from agent_host.approvers import make_approver

    interactive = sys.stdin.isatty()
    return make_approver(args.approver or ("console" if interactive else "deny"), display.console, interactive)


def quiet_azure_identity(debug: bool) -> None:
    """Keep azure-identity's per-credential warnings (a dozen lines before the real error) for `--debug`.

    The failure they explain reaches the user anyway, as one message with a hint.
    """
    logging.getLogger("azure.identity").setLevel(logging.NOTSET if debug else logging.ERROR)


def run_async(main: Callable[[Display], Awaitable[int]], display: Display, *, debug: bool = False) -> int:
    """Run `main` on an event loop; expected failures print a message and set the exit status."""
    import anyio

    quiet_azure_identity(debug)
    try:
        return anyio.run(main, display)
    except HostError as error:
        display.error(error)
        return error.exit_code
    except KeyboardInterrupt:
        display.warning("Interrupted.")
        return 130
