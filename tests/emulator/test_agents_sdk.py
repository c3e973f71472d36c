"""Agents endpoints driven by ``azure-ai-projects`` (sync and aio), as the host will use them."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.aio import AIProjectClient as AsyncAIProjectClient
from azure.ai.projects.models import AgentVersionDetails, PromptAgentDefinition
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from agent_host.emulator import Emulator
from agent_host.foundry.dev_token import (
    AsyncDevTokenCredential,
    AsyncLoopbackBearerTokenPolicy,
    DevTokenCredential,
    LoopbackBearerTokenPolicy,
)

from .helpers import BALANCE_TOOL, BANKING_TOOLS, MODEL


def _create(project: AIProjectClient, name: str, instructions: str = "Be brief.") -> AgentVersionDetails:
    return project.agents.create_version(
        agent_name=name,
        definition=PromptAgentDefinition(model=MODEL, instructions=instructions, tools=BANKING_TOOLS),
        description="bankgate teller",
        metadata={"team": "bankgate"},
    )


def test_create_version_numbers_versions_and_echoes_the_definition(project: AIProjectClient) -> None:
    first = _create(project, "teller")
    second = _create(project, "teller", "Reply prefix: [v2]")

    assert (first.id, first.name, first.version) == ("teller:1", "teller", "1")
    assert (second.id, second.version) == ("teller:2", "2")
    assert isinstance(first.created_at, dt.datetime) and first.created_at.tzinfo is not None
    assert abs(first.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert first.description == "bankgate teller" and first.metadata == {"team": "bankgate"}
    definition = first.definition
    assert isinstance(definition, PromptAgentDefinition)
    assert definition.model == MODEL and definition.instructions == "Be brief."
    assert [tool.as_dict() for tool in definition.tools or []] == [tool.as_dict() for tool in BANKING_TOOLS]
    assert definition.tools is not None and definition.tools[0]["strict"] is True


def test_get_returns_the_latest_version(project: AIProjectClient) -> None:
    _create(project, "teller")
    _create(project, "teller", "Reply prefix: [v2]")

    details = project.agents.get("teller")

    assert (details.id, details.name, details.object) == ("teller", "teller", "agent")
    assert details.versions.latest.version == "2"
    assert isinstance(details.versions.latest.created_at, dt.datetime)


@pytest.mark.parametrize("limit", [None, 1, 2, 100])
def test_list_versions_iterates_every_version_and_terminates(project: AIProjectClient, limit: int | None) -> None:
    for _ in range(3):
        _create(project, "teller")

    newest_first = [v.version for v in project.agents.list_versions("teller", limit=limit)]
    oldest_first = [v.version for v in project.agents.list_versions("teller", limit=limit, order="asc")]

    assert newest_first == ["3", "2", "1"]
    assert oldest_first == ["1", "2", "3"]


def test_list_versions_before_cursor(project: AIProjectClient) -> None:
    for _ in range(3):
        _create(project, "teller")

    assert [v.version for v in project.agents.list_versions("teller", order="asc", before="teller:3")] == ["1", "2"]


def test_get_version_returns_the_pinned_version(project: AIProjectClient) -> None:
    _create(project, "teller", "first")
    _create(project, "teller", "second")

    pinned = project.agents.get_version("teller", "1")

    assert pinned.version == "1"
    assert isinstance(pinned.definition, PromptAgentDefinition) and pinned.definition.instructions == "first"


def test_unknown_agent_and_version_are_404(project: AIProjectClient) -> None:
    _create(project, "teller")

    with pytest.raises(ResourceNotFoundError) as unknown_agent:
        project.agents.get("nobody")
    with pytest.raises(ResourceNotFoundError):
        project.agents.get_version("teller", "9")
    with pytest.raises(ResourceNotFoundError):
        list(project.agents.list_versions("nobody"))

    assert unknown_agent.value.status_code == 404
    assert unknown_agent.value.error is not None and unknown_agent.value.error.code == "not_found"
    assert "nobody" in str(unknown_agent.value.message)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"definition": {"kind": "prompt"}}, "definition.model"),
        ({"definition": {"kind": "workflow", "model": MODEL}}, "definition.kind"),
        ({}, "definition"),
        (
            {"definition": {"kind": "prompt", "model": MODEL, "tools": [{"type": "function"}]}},
            "definition.tools[0].name",
        ),
        ({"definition": {"kind": "prompt", "model": MODEL}, "metadata": {"n": 1}}, "metadata"),
    ],
)
def test_invalid_create_version_bodies_are_400_naming_the_param(
    project: AIProjectClient, body: dict[str, object], param: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        project.agents.create_version("teller", body)

    assert caught.value.status_code == 400 and caught.value.response is not None
    error = json.loads(caught.value.response.text())["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_azure_core_refuses_bearer_tokens_over_http_without_the_loopback_policy(emulator: Emulator) -> None:
    with AIProjectClient(endpoint=emulator.endpoint, credential=emulator.credential(), retry_total=0) as plain:
        with pytest.raises(ServiceRequestError, match="non-TLS"):
            plain.agents.get("teller")
        # The per-operation opt-out from the notes works as well.
        with pytest.raises(ResourceNotFoundError):
            plain.agents.get("teller", enforce_https=False)


def test_wrong_token_and_wrong_audience_are_401(emulator: Emulator) -> None:
    class OtherAudience(DevTokenCredential):
        def get_token_info(self, *scopes: str, options: object = None):  # type: ignore[no-untyped-def]
            return super().get_token_info("https://cognitiveservices.azure.com/.default")

    for credential, message in (
        (DevTokenCredential("not-the-token"), "not valid"),
        (OtherAudience(emulator.token), "https://ai.azure.com"),
    ):
        policy = LoopbackBearerTokenPolicy(credential)
        with (
            AIProjectClient(emulator.endpoint, credential, authentication_policy=policy) as client,
            pytest.raises(ClientAuthenticationError) as caught,
        ):
            client.agents.get("teller")
        assert caught.value.status_code == 401
        assert caught.value.error is not None and caught.value.error.code == "PermissionDenied"
        assert message in str(caught.value.error.message)


def test_the_loopback_policy_keeps_https_enforced_for_other_hosts() -> None:
    credential = DevTokenCredential()
    policy = LoopbackBearerTokenPolicy(credential)
    endpoint = "http://example.com/api/projects/p"
    with (
        AIProjectClient(endpoint, credential, authentication_policy=policy, retry_total=0) as client,
        pytest.raises(ServiceRequestError, match="non-TLS"),
    ):
        client.agents.get("teller")


@pytest.mark.anyio
async def test_async_client_creates_gets_and_lists(emulator: Emulator) -> None:
    credential = AsyncDevTokenCredential(emulator.token)
    policy = AsyncLoopbackBearerTokenPolicy(credential)
    async with AsyncAIProjectClient(emulator.endpoint, credential, authentication_policy=policy) as project:
        for _ in range(2):
            await project.agents.create_version(
                agent_name="teller", definition=PromptAgentDefinition(model=MODEL, tools=[BALANCE_TOOL])
            )
        latest = await project.agents.get("teller")
        versions = [v.version async for v in project.agents.list_versions("teller", limit=1)]

    assert latest.versions.latest.version == "2"
    assert versions == ["2", "1"]
