"""The baselines' gated tools answer in bankgate's published output schemas, as the balance floor answers in the
balance schema: the client validates every structured result against its tool's schema, so a baseline answering
`{"result": "executed"}` (a one-string schema) skipped work bankgate's published interface makes any gate do."""

from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer

from bench import floor_server, required_server
from bench.bare_server import bare_server
from bench.servers import bench_settings
from mcp_server.app import build_server, open_state

GATED = {
    "approve_durably": "transfer_funds",
    "approve_recorded": "transfer_funds",
    "floor_transfer": "transfer_funds",
    "floor_close": "close_account",
    "required_transfer": "transfer_funds",
    "required_close": "close_account",
}
"""Each baseline's gated tool, with the bankgate tool whose work it stands for."""


def output_schemas(server: MCPServer) -> dict[str, Any]:
    async def listed() -> dict[str, Any]:
        async with Client(server) as client:
            return {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}

    return anyio.run(listed)


def test_every_gated_baseline_answers_in_the_schema_of_the_tool_it_stands_for(tmp_path: Path) -> None:
    settings = bench_settings(tmp_path)
    ours = output_schemas(build_server(open_state(settings, create=True, seed=True), settings))
    db = f"sqlite:///{tmp_path / 'baselines.db'}"
    theirs = {
        **output_schemas(bare_server()),
        **output_schemas(floor_server.floor_server(floor_server.open_store(db))),
        **output_schemas(required_server.required_server(required_server.open_store(db))),
    }
    assert {tool: theirs[tool] for tool in GATED} == {tool: ours[mine] for tool, mine in GATED.items()}
