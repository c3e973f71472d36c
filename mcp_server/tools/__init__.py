"""The three banking tools, one module each (`balance`, `transfer`, `close`): the MCP function the
model sees (name, description, schema, annotations), the gate's `Action` over the ledger, the
result model and the question's text.

The bodies only present the gate's result; every decision is taken before a body runs, by the
`settle` resolver (or, for a tool the policy never routes to a human, by `prepare` alone through
`decided_at_once`), so no tool can execute without the policy layer.

`inspect` asks the ledger to plan the operation (every check it will make, on rows locked for the
rest of the transaction, nothing written): the question shows exactly what would happen, and a
call that could not succeed is refused before anyone is asked. The account a call reads, debits
or closes is looked up through the caller's entitlements first: one the policy hides from the
caller (`[accounts] visible`) is refused exactly as a missing one, before any other check could
reveal its status, currency or balance. The account paid into (`to_account`, `sweep_to`) is not
hidden: paying someone is normal banking.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations

from mcp_server.ledger.books import Ledger
from mcp_server.tools import balance, close, transfer
from mcp_server.tools.common import LedgerAction
from policy.action import Action
from policy.document import Policy
from policy.mcp.round import decided_at_once

TOOLS: tuple[tuple[Callable[..., Awaitable[CallToolResult]], ToolAnnotations, type[LedgerAction]], ...] = (
    (balance.get_account_balance, balance.ANNOTATIONS, balance.BalanceAction),
    (transfer.transfer_funds, transfer.ANNOTATIONS, transfer.TransferAction),
    (close.close_account, close.ANNOTATIONS, close.CloseAction),
)
"""Each tool: its MCP function, its annotations and its `Action`."""

TOOL_ARGUMENTS: dict[str, dict[str, bool]] = {
    action.name: {argument: argument in action.required for argument in action.arguments} for _, _, action in TOOLS
}
"""Each tool's argument names, each with whether a call must carry it, for checking a policy file
without opening a ledger."""


def ledger_actions(ledger: Ledger, policy: Policy) -> dict[str, Action]:
    """The tools over `ledger`; `policy` says which accounts each caller may know of (the gate's policy)."""
    return {action.name: action(ledger, policy) for _, _, action in TOOLS}


def register_tools(server: MCPServer[Any], policy: Policy) -> None:
    """Register the tools; one the policy never routes to a human goes without the approval round."""
    for fn, annotations, _ in TOOLS:
        tool = fn if policy.may_ask(fn.__name__) else decided_at_once(fn)
        server.tool(annotations=annotations, structured_output=True)(tool)
