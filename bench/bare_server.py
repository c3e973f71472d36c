"""The baseline: a bare `MCPServer` with an echo tool and an approval tool whose body does nothing.

Run as a module (`python -m bench.bare_server --transport stdio|http --port N`) so the stdio
and HTTP paths compare the same transport code with and without bankgate behind it.
"""

import argparse
from typing import Annotated

import uvicorn
from mcp.server.mcpserver import Elicit, ElicitationResult, MCPServer, Resolve
from pydantic import BaseModel


class Approval(BaseModel):
    approve: bool


async def ask(from_account: str, to_account: str, amount: str) -> Elicit[Approval]:
    return Elicit(f"Transfer {amount} from {from_account} to {to_account}?", Approval)


def bare_server() -> MCPServer:
    server = MCPServer("bare")

    @server.tool()
    async def echo(account_id: str) -> str:
        return account_id

    @server.tool()
    async def approve_noop(
        from_account: str, to_account: str, amount: str, *, answer: Annotated[ElicitationResult[Approval], Resolve(ask)]
    ) -> str:
        return answer.action

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8800)
    args = parser.parse_args()
    server = bare_server()
    if args.transport == "stdio":
        server.run()
    else:
        uvicorn.run(
            server.streamable_http_app(streamable_http_path="/mcp"),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
        )


if __name__ == "__main__":
    main()
