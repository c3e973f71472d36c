"""The baselines: a bare `MCPServer` with tools that do the least their kind of call can do.

- `echo`: returns its argument (server_bench's baseline).
- `approve_noop`: asks the SDK's approval question, then does nothing (gate_bench's baseline).
- The floors, which show how close any implementation on this SDK could come:
  `read_shaped` does what a balance tool must (one indexed SQLite read, a result in the
  published balance output schema, which the client validates), with no ledger and no policy; `approve_durably` adds
  what a gate that keeps its promises must do (a commit of the question before asking, which
  need not wait for the disk, and a durable one after the answer, both on the event loop, as
  bankgate's own are, and the outcome in the published transfer output schema), with no policy, ledger or audit.
- The required-work floors (`bench.required_work`): `read_entitled` and `approve_recorded` add
  the checks and records any gate keeping bankgate's promises must make.

Run as a module (`python -m bench.bare_server --transport stdio|http --port N`) so the stdio
and HTTP paths compare the same transport code with and without bankgate behind it.
"""

import argparse
import sqlite3
import tempfile
from pathlib import Path
from typing import Annotated

import uvicorn
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp_types import CallToolResult

from bench import required_work
from bench.bare_parts import Approval, ask, balance_result, outcome_result
from mcp_server.heap import settle_heap
from mcp_server.tools.balance import BalanceResult
from mcp_server.tools.transfer import TransferResult


class Journal:
    """One SQLite file used the way the ledger uses its own: WAL, `synchronous=FULL` for what
    must survive power loss, one writer, on the event loop."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(Path(tempfile.mkdtemp()) / "journal.db", isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY, what TEXT)")
        self._conn.execute("CREATE TABLE balances (id TEXT PRIMARY KEY, minor INTEGER)")
        self._conn.execute("INSERT INTO balances VALUES ('ACC-001', 500000)")

    def commit(self, what: str, *, durable: bool = True) -> None:
        self._conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute("INSERT INTO journal (what) VALUES (?)", (what,))
        self._conn.execute("COMMIT")

    def balance(self, account_id: str) -> int:
        """One indexed read on the kept connection: the least a balance has to cost."""
        row = self._conn.execute("SELECT minor FROM balances WHERE id = ?", (account_id,)).fetchone()
        return int(row[0])


def bare_server() -> MCPServer:
    server = MCPServer("bare")
    journal = Journal()

    async def asked_durably(ctx: Context) -> bool:
        if ctx.request_state is None:  # the first round; a round bringing the answer only reads
            journal.commit("asked", durable=False)
        return True

    async def ask_durably(
        from_account: str, to_account: str, amount: str, recorded: Annotated[bool, Resolve(asked_durably)]
    ) -> Elicit[Approval]:
        return await ask(from_account, to_account, amount)

    @server.tool()
    async def echo(account_id: str) -> str:
        return account_id

    @server.tool(structured_output=True)
    async def read_shaped(account_id: str) -> Annotated[CallToolResult, BalanceResult]:
        return balance_result(account_id, journal.balance(account_id))

    @server.tool()
    async def approve_noop(
        from_account: str, to_account: str, amount: str, *, answer: Annotated[ElicitationResult[Approval], Resolve(ask)]
    ) -> str:
        return answer.action

    @server.tool(structured_output=True)
    async def approve_durably(
        from_account: str,
        to_account: str,
        amount: str,
        *,
        answer: Annotated[ElicitationResult[Approval], Resolve(ask_durably)],
    ) -> Annotated[CallToolResult, TransferResult]:
        outcome = "executed" if isinstance(answer, AcceptedElicitation) and answer.data.approve else "rejected"
        journal.commit(outcome)
        receipt = {"from_account": from_account, "to_account": to_account, "amount": amount}
        return outcome_result(TransferResult, outcome, None, receipt)

    required_work.register(server, required_work.Records())
    return server


def serve(server: MCPServer, transport: str, port: int) -> None:
    """Over stdio, or Streamable HTTP on loopback at `/mcp`, as bankgate serves (its heap settled as bankgate's)."""
    settle_heap()
    if transport == "stdio":
        server.run()
    else:
        app = server.streamable_http_app(streamable_http_path="/mcp")
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8800)
    args = parser.parse_args()
    serve(bare_server(), args.transport, args.port)


if __name__ == "__main__":
    main()
