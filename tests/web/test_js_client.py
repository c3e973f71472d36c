"""An independent client: the official ``@ag-ui/client`` from npm, run with the machine's Node.

Skips with the reason where ``node``/``npm`` are missing or the package cannot be installed (no
registry); ``tests/agui_js/package.json`` pins the version, installed into a temporary folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from agent_host.emulator import Emulator
from tests.host.helpers import REPO, balance

from .helpers import web_for

pytestmark = pytest.mark.anyio
SOURCE = REPO / "tests" / "agui_js"


@pytest.fixture(scope="module")
def js_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the @ag-ui/client check")
    folder = tmp_path_factory.mktemp("agui_js")
    for name in ("package.json", "transfer.mjs"):
        shutil.copy(SOURCE / name, folder / name)
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode != 0:
        pytest.skip(f"npm could not install @ag-ui/client: {installed.stderr.strip()[-300:]}")
    return folder


async def test_the_official_js_client_approves_a_transfer(
    emulator: Emulator, tmp_path: Path, agent_name: str, js_client: Path
) -> None:
    async with web_for(emulator, tmp_path, agent_name) as web:
        command = ["node", "transfer.mjs", web.url, "Transfer $75 from ACC-001 to ACC-002.", '{"approve": true}']
        done = await anyio.run_process(command, cwd=js_client, check=False)
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout.decode().strip().splitlines()[-1])
        assert await balance(web.host, "ACC-002") == Decimal("325.00")

    (interrupt,) = report["interrupts"]
    assert interrupt["reason"] == "approval_required" and interrupt["message"].startswith("Approval required")
    assert report["errors"] == [] and report["pending"] == []
    assert report["events"].count("RUN_STARTED") == 2 and report["events"].count("RUN_FINISHED") == 2
    tool = [m for m in report["messages"] if m["role"] == "tool"]
    assert json.loads(tool[0]["content"])["status"] == "executed"
    assistant = [m for m in report["messages"] if m["role"] == "assistant" and m.get("content")]
    assert "Done: the transfer of 75 from ACC-001 to ACC-002 is complete." in assistant[-1]["content"]
