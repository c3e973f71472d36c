"""A desk world served over MCP in memory: the gate's server and the desk share one ledger, and an
approver (software passkey, signed in over in-process HTTP) decides what the tools send there."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client import ClientRequestContext
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult

from mcp_server.app import build_server, open_state
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser, World
from tests.support import TEST_POLICY

Callback = Callable[[ClientRequestContext, ElicitRequestParams], Awaitable[ElicitResult]]


def desk_policy(folder: Path, channel: str = "desk") -> Path:
    """The test policy with transfers approved only through `channel` (desk by default)."""
    text = TEST_POLICY.read_text().replace(
        'reason = "Moving money needs a human\'s approval."',
        f'reason = "Moving money needs a human\'s approval."\nchannel = "{channel}"',
        1,
    )
    path = folder / f"{channel}_policy.toml"
    path.write_text(text)
    return path


class ChannelWorld(World):
    """`World` with a chosen policy and approval timeout, served by in-memory MCP clients."""

    def configure(
        self, *, policy: Path = TEST_POLICY, approval_timeout: float = 300, desk: bool = True
    ) -> "ChannelWorld":
        changes = {"policy": policy, "approval_timeout": approval_timeout, "desk": desk}
        self.settings = self.settings.model_copy(update=changes)
        self.state = open_state(self.settings)
        return self

    def client(
        self,
        callback: Callback | None = None,
        *,
        mode: str = "auto",
        principal: str = "local",
        received: list[object] | None = None,
    ) -> Client:
        """An in-memory client; `received` collects the server's notifications to it."""
        settings = self.settings.model_copy(update={"principal": principal})
        state = self.state if principal == self.settings.principal else open_state(settings)

        async def keep(message: object) -> None:
            if received is not None:
                received.append(message)

        server = build_server(state, settings)
        return Client(server, elicitation_callback=callback, mode=mode, message_handler=keep)  # type: ignore[arg-type]

    def transfer(self, amount: str = "250.00", **extra: Any) -> dict[str, Any]:
        return {"from_account": self.source, "to_account": self.target, "amount": amount, **extra}

    def balance(self, account: str) -> int:
        return self.state.ledger.balance(account).balance_minor

    def events(self, ref: str) -> list[str]:
        return [r.event for r in self.rows("SELECT event FROM audit_log WHERE approval_ref = :r ORDER BY seq", r=ref)]

    def status(self, ref: str) -> str:
        return str(self.rows("SELECT status FROM approvals WHERE ref = :r", r=ref)[0].status)


def body(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    return dict(result.structured_content)


def opens_the_link(approver: DeskBrowser, passkey: SoftPasskey, verdict: str, seen: list[str]) -> Callback:
    """An elicitation callback that handles `mode == "url"` by deciding at the desk the link names;
    it would approve any form it were shown (so a form reaching it is visible in `seen`)."""

    async def callback(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        seen.append(params.mode or "form")
        if params.mode != "url":
            return ElicitResult(action="accept", content={"approve": True})
        ref = params.url.rsplit("/", 1)[-1]
        reply = await approver.decide(ref, verdict, passkey, note=f"{verdict} at the desk")
        assert reply.status_code == 200, reply.text
        return ElicitResult(action="accept")

    return callback
