"""`bankgate-mcp approvers add|list|revoke|link|unlink`: argument parsing only (the work loads when a command runs)."""

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, database_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `approvers` command group to the top-level sub-parsers `sub`."""
    group = sub.add_parser("approvers", help="people who approve at the approval desk (with passkeys)")
    actions = group.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="invite an approver: prints a one-time enrollment link (15 minutes)")
    add.add_argument("name", help="the approver's name, e.g. alice (not an MCP principal)")
    add.add_argument("--role", help="a label for policies (default: approver; a re-invite keeps the role)")
    add.add_argument("--desk-url", help="the desk's public URL for the link (BANKGATE_DESK_URL)")
    add.set_defaults(run=lambda s, a: _commands().approvers_add(s, a.name, a.role))
    listing = actions.add_parser("list", help="list approvers, their status and passkeys")
    listing.set_defaults(run=lambda s, a: _commands().approvers_list(s))
    revoke = actions.add_parser(
        "revoke", help="end an approver's sessions, passkeys and yeses not yet run (past signatures still verify)"
    )
    revoke.add_argument("name", help="the approver")
    revoke.set_defaults(run=lambda s, a: _commands().approvers_revoke(s, a.name))
    link = actions.add_parser("link", help="record an MCP principal the approver also acts as (four eyes)")
    unlink = actions.add_parser("unlink", help="forget a principal the approver acted as")
    for command, run in ((link, "approvers_link"), (unlink, "approvers_unlink")):
        command.add_argument("name", help="the approver")
        # Not `principal`: the stdio caller's setting, whose check would refuse to unlink a name linked under an
        # earlier rule, and call a bad one configuration.
        command.add_argument("linked", metavar="principal", help="the MCP principal, as its credential names it")
        command.set_defaults(run=lambda s, a, run=run: getattr(_commands(), run)(s, a.name, a.linked))
    for command in (add, listing, revoke, link, unlink):
        database_option(command)


def _commands() -> Any:
    from mcp_server.desk import commands

    return commands
