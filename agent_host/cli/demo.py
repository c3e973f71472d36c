"""`bankgate-agent demo`: the lab end to end with zero configuration.

It starts the offline Foundry emulator and a bankgate MCP server on a fresh ledger in a temporary
directory, then walks through the lab: a balance, an approved and a rejected transfer, a rejected
closure, a multi-turn exchange, a streamed answer, and a new agent version beside a call pinned to
version 1. A scripted approver answers the approval questions; the ledger is read back through
MCP at the end to show what really happened.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from decimal import Decimal

from agent_host.approvers import ScriptedApprover, parse_script
from agent_host.cli.common import run_async
from agent_host.cli.offline import offline_lab
from agent_host.conversation import Conversation
from agent_host.display import Display
from agent_host.foundry.agents import INSTRUCTIONS, AgentChoice, create_version
from agent_host.host import Host, open_host
from agent_host.settings import DEFAULT_EMULATOR_MODEL, Transport

AGENT = "bankgate-demo"
SCRIPT = """
approve note="demo: rent is expected"
reject note="demo: not authorised"
reject note="demo: keep ACC-003 open"
"""
VERSION_2_INSTRUCTIONS = INSTRUCTIONS + "\nReply prefix: [v2]"


@dataclass(frozen=True)
class Step:
    title: str
    request: str


BANKING_STEPS = (
    Step("1. Balance (no approval needed)", "What is the balance of ACC-001?"),
    Step("2. Transfer, approved by the operator", 'Transfer $250 from ACC-001 to ACC-002, memo "March rent".'),
    Step("3. Transfer, rejected by the operator", "Transfer $300 from ACC-002 to ACC-003."),
    Step("4. Close ACC-003, rejected by the operator", "Close ACC-003 and sweep to ACC-001."),
)
EXPECTED = {"ACC-001": Decimal("4750.00"), "ACC-002": Decimal("500.00"), "ACC-003": Decimal("120.00")}
"""The seeded balances (5000, 250, 120) after steps 2-4: only the approved transfer moved money."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=("sdk", "rest"), default="sdk", help="wire path (default sdk)")


def run(args: argparse.Namespace) -> int:
    async def main(display: Display) -> int:
        return await demo(display, args.transport)

    return run_async(main, Display())


async def demo(display: Display, transport: Transport) -> int:
    """Run the demo; 0 when the ledger read back through MCP shows exactly the expected effects."""
    display.panel(
        "bankgate demo",
        "Offline: the Foundry emulator's model is a rule-based stand-in, not an LLM.\n"
        "The MCP server runs on a temporary SQLite ledger seeded with ACC-001..ACC-003.\n"
        "Approval questions go to a scripted approver, not the model: it approves the first transfer,\n"
        "rejects the second and rejects the closure.",
    )
    async with offline_lab("bankgate-demo-", AGENT, transport=transport) as (settings, target):
        approver = ScriptedApprover(parse_script(SCRIPT.strip(), "demo script"))
        async with open_host(settings, display, approver, target) as host:
            display.note(host.describe())
            await _walk_through(host)
            return await _check_ledger(host)


async def _walk_through(host: Host) -> None:
    display = host.display
    for step in BANKING_STEPS:
        display.section(step.title)
        await _ask(display, step.request, host.conversation())

    display.section("5. Multi-turn: the second request continues the first (previous_response_id)")
    display.show_ids = True
    conversation = host.conversation()
    for request in ("Tell me a one-line story about an astronaut.", "Continue the story in one more line."):
        await _ask(display, request, conversation)
    display.show_ids = False

    display.section("6. Streamed: text printed as deltas arrive, calls assembled from argument deltas")
    await _ask(display, "What are the balances of ACC-001 and ACC-002?", host.conversation(stream=True))

    display.section("7. A new agent version, and a call pinned to version 1")
    version = await create_version(
        host.project,
        host.access,
        host.agent.name,
        model=DEFAULT_EMULATOR_MODEL,
        instructions=VERSION_2_INSTRUCTIONS,
        tools=host.toolbox.definitions(),
    )
    display.note(f"Created version {version} of {host.agent.name} (its instructions add 'Reply prefix: [v2]').")
    for label, choice in (
        ("latest version", AgentChoice(host.agent.name, version, pinned=False)),
        ("pinned to version 1", AgentChoice(host.agent.name, "1", pinned=True)),
    ):
        display.note(f"agent_reference: {choice.reference()} ({label})")
        await _ask(display, "What is the balance of ACC-003?", host.conversation(choice))


async def _ask(display: Display, request: str, conversation: Conversation) -> None:
    display.user(request)
    await conversation.send(request)


async def _check_ledger(host: Host) -> int:
    """Read the balances back through MCP (not through the model) and compare them with the plan."""
    display = host.display
    display.section("Ledger, read back through the MCP server")
    actual: dict[str, Decimal | None] = {}
    for account in EXPECTED:
        output = (await host.link.call("get_account_balance", {"account_id": account})).output
        read = output.get("status") == "executed"
        actual[account] = Decimal(output["balance"]) if read else None
        display.line(f"  {account}: ", str(output["formatted"] if read else output.get("message")))
    approvals = ", ".join(answer.label for _, answer in host.desk.records)
    display.note(f"Approval questions answered (scripted): {approvals}.")
    if actual != EXPECTED:
        display.warning(f"Unexpected ledger: {actual} (expected {EXPECTED}).")
        return 1
    display.line(
        "✓ ", "Only the approved transfer moved money; the rejected transfer and closure changed nothing.", "bold green"
    )
    return 0
