"""What the baselines share: the approval form, the plain question, the balance result and a gated call's
outcome, each built the least costly way (`bench.bare_server`, `bench.floor_server`, `bench.required_work`)."""

import functools
import json
from typing import Any

from mcp.server.mcpserver import Elicit
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_server.tools.balance import BalanceResult
from mcp_server.tools.close import CloseResult
from mcp_server.tools.transfer import TransferResult


class Approval(BaseModel):
    approve: bool

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Rendered once and copied from its JSON text, as bankgate does its own form (`policy.mcp.form.ApprovalForm`):
        the SDK asks for the schema on every round, and a baseline that regenerated it, or copied it more
        slowly, would flatter bankgate."""
        copied: dict[str, Any] = json.loads(_rendered_schema(cls, args, tuple(sorted(kwargs.items()))))
        return copied


@functools.cache
def _rendered_schema(model: type[BaseModel], args: tuple[Any, ...], options: tuple[Any, ...]) -> str:
    return json.dumps(BaseModel.model_json_schema.__func__(model, *args, **dict(options)))  # type: ignore[attr-defined]


def balance_result(account_id: str, minor: int) -> CallToolResult:
    """A balance in the published output schema, built the least costly way."""
    body = BalanceResult(
        status="executed",
        message=f"Account {account_id} balance: ${minor // 100:,}.{minor % 100:02}",
        approval_ref=None,
        error=None,
        approval_url=None,
        expires_at=None,
        account_id=account_id,
        owner="Alice Example",
        currency="USD",
        balance=f"{minor // 100}.{minor % 100:02}",
        balance_minor=minor,
        formatted=f"${minor // 100:,}.{minor % 100:02}",
        account_status="open",
    )
    return CallToolResult(content=[TextContent(type="text", text=body.message)], structured_content=body.present())


def outcome_result(
    model: type[TransferResult | CloseResult], outcome: str, approval_ref: str | None, receipt: dict[str, Any]
) -> CallToolResult:
    """A gated call's `outcome` (`executed`, `rejected`, `failed: why`…) in the published output schema of the tool it
    stands for (`model`: `TransferResult`, `CloseResult`), which the client validates, as bankgate answers; the
    receipt only once executed. Built the least costly way; the outcome is also its one sentence."""
    status = outcome.partition(":")[0]
    body = model(
        status=status,  # type: ignore[arg-type]  # one of the schema's statuses
        message=outcome,
        approval_ref=approval_ref,
        error={"code": "failed", "message": outcome} if status == "failed" else None,
        approval_url=None,
        expires_at=None,
        receipt=receipt if status == "executed" else None,
    )
    return CallToolResult(content=[TextContent(type="text", text=outcome)], structured_content=body.present())


async def ask(from_account: str, to_account: str, amount: str) -> Elicit[Approval]:
    return Elicit(f"Transfer {amount} from {from_account} to {to_account}?", Approval)
