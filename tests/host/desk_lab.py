"""bankgate's server with transfers routed to its approval desk, and an enrolled approver who decides there.

The host launches the server over stdio as usual; the server starts its desk on a loopback port
(`BANKGATE_DESK_PORT`). The approver is enrolled with `bankgate-mcp approvers add` (its `main`, run
in the test's process on the same ledger) and decides through the desk's HTTP API with the software passkey of
`tests/desk`, so every decision is a real signed one.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from unittest.mock import patch

import httpx2

import policy
from agent_host.mcp_link import McpTarget
from agent_host.settings import HostSettings
from mcp_server.cli.main import main
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser

from .helpers import free_port, ledger_target

_ENROLL_LINK = re.compile(r"(http://\S+/desk/enroll#token=\S+)")
SHIPPED = Path(policy.__file__).with_name("default_policy.toml")


@dataclass(frozen=True)
class DeskLab:
    """Where the desk runs and how the launched server is configured to use it for transfers."""

    folder: Path
    port: int

    @classmethod
    def create(cls, folder: Path) -> DeskLab:
        text = SHIPPED.read_text(encoding="utf-8")
        anchor = 'reason = "Moving money needs a human\'s approval."\n'
        assert anchor in text, "the shipped policy's transfer section moved"
        (folder / "desk_policy.toml").write_text(text.replace(anchor, anchor + 'channel = "desk"\n'), encoding="utf-8")
        return cls(folder, free_port())

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "BANKGATE_DESK": "true",
            "BANKGATE_POLICY": str(self.folder / "desk_policy.toml"),
            "BANKGATE_DESK_PORT": str(self.port),
            "BANKGATE_DESK_URL": f"{self.origin}/desk",
            "BANKGATE_AUDIT_KEY_FILE": str(self.folder / "audit.key"),
        }

    def target(self, settings: HostSettings) -> McpTarget:
        return replace(ledger_target(settings, self.folder), server_env=self.env)

    @asynccontextmanager
    async def approver(self, name: str = "erin") -> AsyncIterator[tuple[DeskBrowser, SoftPasskey]]:
        """`name`, invited on the server's ledger, enrolled with a passkey and signed in at the desk."""
        printed = io.StringIO()
        with patch.dict(os.environ, self.env), redirect_stdout(printed):  # the settings the launched server has
            status = main(["approvers", "add", name, "--db", f"sqlite:///{self.folder / 'ledger.db'}"])
        assert status == 0, printed.getvalue()
        found = _ENROLL_LINK.search(printed.getvalue())
        assert found is not None, printed.getvalue()
        token = found.group(1).rpartition("token=")[2]
        passkey = SoftPasskey(origin=self.origin)
        async with httpx2.AsyncClient(base_url=self.origin, timeout=30) as client:
            desk = DeskBrowser(client, self.origin)
            enrolled = await desk.enroll(token, passkey)
            assert enrolled.status_code == 200, enrolled.text
            yield desk, passkey
