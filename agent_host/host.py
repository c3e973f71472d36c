"""Assembly: settings -> project access, MCP link, tools, agent and wire path, ready for conversations.

The configuration is checked before anything starts, and everything opened here is closed on the
way out, including the MCP server the host launched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx2
from azure.ai.projects.aio import AIProjectClient

from agent_host.approvers import ApprovalDesk, Approver, DenyApprover
from agent_host.conversation import Conversation, ResponsesTransport, TurnAgent, TurnObserver
from agent_host.display import Display
from agent_host.errors import sole_error
from agent_host.foundry.access import ProjectAccess, project_access
from agent_host.foundry.agents import AgentChoice, choose_agent
from agent_host.foundry.function_tools import Relisting, Toolbox
from agent_host.foundry.retries import TIMEOUT
from agent_host.foundry.transport_rest import RestTransport
from agent_host.foundry.transport_sdk import SdkTransport
from agent_host.mcp_link import McpLink, McpTarget, connect
from agent_host.settings import HostSettings
from agent_host.waiting import BusyTransport


@dataclass
class Host:
    settings: HostSettings
    access: ProjectAccess
    project: AIProjectClient
    link: McpLink
    toolbox: Toolbox
    agent: AgentChoice
    transport: ResponsesTransport
    desk: ApprovalDesk
    display: Display

    def conversation(
        self, agent: AgentChoice | None = None, *, stream: bool | None = None, observer: TurnObserver | None = None
    ) -> Conversation:
        """A new chain of responses with `agent` (the host's agent by default, kept to the server's tools), shown on
        `observer`."""
        return Conversation(
            self.transport,
            self.toolbox,
            (agent or self.agent).reference(),
            observer or self.display,
            stream=self.settings.stream if stream is None else stream,
            max_rounds=self.settings.max_rounds,
            agent_for_turn=self.agent_for_turn if agent is None else None,
        )

    async def agent_for_turn(self, observer: TurnObserver) -> TurnAgent:
        """The host's agent for the next turn, with its tools: after a reconnect to a server that lists other tools, a
        version made from them. An agent the user chose as it is (`--existing-agent`, `--agent-version`) is left as it
        is. Other conversations keep the agent and tools their turn began with."""
        relisting = self.toolbox.relisted()
        if relisting is not None:
            await self._take_up(relisting, observer)
        return TurnAgent(self.agent.reference(), self.toolbox.tools)

    async def _take_up(self, relisting: Relisting, observer: TurnObserver) -> None:
        names = ", ".join(sorted(relisting.tools)) or "none"
        as_it_is = self.settings.existing_agent or self.settings.agent_version is not None
        if as_it_is:
            note = (
                f"The MCP server now lists other tools ({names}); agent {self.agent.name} is used as it is "
                "(--existing-agent / --agent-version), so a call to a tool the server no longer has, or has with "
                "other arguments, is refused."
            )
        else:  # made first, so a failure leaves the tools to be taken up by the next turn
            self.agent = await choose_agent(
                self.project,
                self.access,
                self.settings.agent_name,
                model=self.settings.chat_model or self.access.default_model,
                tools=[tool.definition() for tool in relisting.tools.values()],
            )
            note = (
                f"The MCP server now lists other tools ({names}): from this request on, agent "
                f"{self.agent.name} v{self.agent.version} carries them."
            )
        self.toolbox.adopt(relisting, given=not as_it_is)
        observer.warning(note)

    def describe(self) -> str:
        agent = self.agent
        how = "created" if agent.created else ("pinned" if agent.pinned else "latest")
        return (
            f"agent {agent.name} v{agent.version} ({how}) · {self.transport.name} path · "
            f"MCP {self.link.target.describe()} ({self.link.protocol_version}) · approver {self.desk.approver.name}"
        )


def mcp_target(settings: HostSettings) -> McpTarget:
    return McpTarget(
        url=settings.mcp_url,
        token=settings.mcp_token.get_secret_value() if settings.mcp_token else None,
        db_url=settings.db_url,
        protocol=settings.mcp_protocol,
        call_timeout=settings.tool_timeout,
    )


@asynccontextmanager
async def open_host(
    settings: HostSettings, display: Display, approver: Approver, target: McpTarget | None = None
) -> AsyncIterator[Host]:
    """Connect everything `settings` describe; `target` overrides the MCP server they name."""
    access = project_access(settings)
    desk = ApprovalDesk(approver, display, settings.approval_timeout)
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(access.aclose)
            with display.busy("Starting the MCP server and connecting to the Foundry project…"):
                host = await _assemble(stack, settings, access, desk, display, target or mcp_target(settings))
            yield host
    except BaseExceptionGroup as group:
        # The MCP client's task groups wrap whatever escapes them; a lone error is shown as itself.
        raise sole_error(group) from None


async def _assemble(
    stack: AsyncExitStack,
    settings: HostSettings,
    access: ProjectAccess,
    desk: ApprovalDesk,
    display: Display,
    target: McpTarget,
) -> Host:
    # With nobody to ask, the elicitation capability is left undeclared: the server then denies such
    # calls itself, audited as "no human can be asked" rather than as a person's rejection.
    nobody = isinstance(desk.approver, DenyApprover)
    link = await stack.enter_async_context(connect(target, None if nobody else desk, desk.on_message))
    project = await stack.enter_async_context(
        AIProjectClient(
            endpoint=access.endpoint,
            credential=access.credential,
            authentication_policy=access.policy(),
            **access.client_options(),
        )
    )
    toolbox = Toolbox(link, strict=settings.strict_tools, desk=desk)
    agent = await choose_agent(
        project,
        access,
        settings.agent_name,
        model=settings.chat_model or access.default_model,
        tools=toolbox.definitions(),
        version=settings.agent_version,
        existing=settings.existing_agent,
    )
    timeout = httpx2.Timeout(settings.response_timeout, connect=TIMEOUT.connect)
    transport: ResponsesTransport = (
        SdkTransport(project, access, settings.max_retries, timeout=timeout)
        if settings.transport == "sdk"
        else RestTransport(access, settings.max_retries, timeout=timeout)
    )
    stack.push_async_callback(transport.aclose)
    if display.errors.is_terminal:
        transport = BusyTransport(transport, display)
    return Host(settings, access, project, link, toolbox, agent, transport, desk, display)
