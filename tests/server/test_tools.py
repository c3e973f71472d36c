"""What a model sees: names, parameter contract, descriptions, truthful annotations, output schemas."""

import pytest

from tests.server.harness import Harness

pytestmark = pytest.mark.anyio


async def test_tool_contract(tmp_path: object) -> None:
    harness = Harness("memory", f"sqlite:///{tmp_path}/ledger.db")
    async with harness.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"get_account_balance", "transfer_funds", "close_account"}
    transfer, balance, close = tools["transfer_funds"], tools["get_account_balance"], tools["close_account"]
    assert list(transfer.input_schema["properties"]) == ["from_account", "to_account", "amount", "memo", "approval_ref"]
    assert transfer.input_schema["required"] == ["from_account", "to_account", "amount"]
    assert close.input_schema["required"] == ["account_id"]
    assert "ask the user" not in (transfer.description or "").lower()
    assert "asks the operator itself" in (transfer.description or "")
    assert balance.annotations is not None and balance.annotations.read_only_hint is True
    assert transfer.annotations is not None and transfer.annotations.destructive_hint is True
    assert transfer.annotations.idempotent_hint is False
    assert close.annotations is not None and close.annotations.destructive_hint is True
    for tool in tools.values():
        assert tool.output_schema is not None and "status" in tool.output_schema["properties"]
        assert "message" in tool.output_schema["required"]
