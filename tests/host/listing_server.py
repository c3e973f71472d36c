"""A stand-in MCP server over Streamable HTTP whose tool list the test picks: a server restarted as another
release, listing other tools (one gone, one added, one with changed arguments), for the host's reconnect tests.

`python -m tests.host.listing_server PORT EDITION [LEDGER]`; every tool answers `executed` with the arguments it got,
and each transfer it runs is added to the file LEDGER, one line each, so a test can tell whether money moved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

_ledger: Path | None = None
"""Where this process writes the transfers it runs, if anywhere."""


def _moved(message: str) -> dict[str, Any]:
    if _ledger is not None:
        with _ledger.open("a", encoding="utf-8") as ledger:
            ledger.write(f"{message}\n")
    return {"status": "executed", "message": message}


def get_account_balance(account_id: str) -> dict[str, Any]:
    """Read an account's balance."""
    return {"status": "executed", "message": f"{account_id} holds 100.00 USD.", "balance": "100.00"}


def transfer_funds(from_account: str, to_account: str, amount: str) -> dict[str, Any]:
    """Move money between two accounts."""
    return _moved(f"Moved {amount} from {from_account} to {to_account}.")


def transfer_funds_in_cents(from_account: str, to_account: str, amount: str, fee_cents: int = 500) -> dict[str, Any]:
    """Move money between two accounts, charging a fee unless told otherwise."""
    return _moved(f"Moved {amount} (fee {fee_cents}) from {from_account} to {to_account}.")


def close_account(account_id: str) -> dict[str, Any]:
    """Close an empty account."""
    return {"status": "executed", "message": f"Closed {account_id}."}


EDITIONS: dict[str, dict[str, Callable[..., dict[str, Any]]]] = {
    "first": {"get_account_balance": get_account_balance, "transfer_funds": transfer_funds},
    "without_transfers": {"get_account_balance": get_account_balance, "close_account": close_account},
    "with_fees": {"get_account_balance": get_account_balance, "transfer_funds": transfer_funds_in_cents},
}


def main(port: int, edition: str, ledger: Path | None = None) -> None:
    global _ledger
    _ledger = ledger
    server: MCPServer[Any] = MCPServer("listing-server")
    for name, tool in EDITIONS[edition].items():
        server.add_tool(tool, name=name, structured_output=True)
    server.run("streamable-http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]) if len(sys.argv) > 3 else None)
