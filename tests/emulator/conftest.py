"""Fixtures: a fresh emulator per test, and the real SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import PromptAgentDefinition
from openai import OpenAI

from agent_host.emulator import Emulator
from agent_host.foundry.dev_token import LoopbackBearerTokenPolicy

from .helpers import BANKING_TOOLS, MODEL


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def project(emulator: Emulator) -> Iterator[AIProjectClient]:
    credential = emulator.credential()
    with AIProjectClient(
        endpoint=emulator.endpoint,
        credential=credential,
        authentication_policy=LoopbackBearerTokenPolicy(credential),
    ) as client:
        yield client


@pytest.fixture
def openai_client(project: AIProjectClient) -> Iterator[OpenAI]:
    """The project's OpenAI client with strict response validation: every body and event must parse."""
    with project.get_openai_client(_strict_response_validation=True) as client:
        yield client


@pytest.fixture
def teller(project: AIProjectClient) -> str:
    """An agent whose version 1 has the three banking tools."""
    project.agents.create_version(
        agent_name="teller",
        definition=PromptAgentDefinition(
            model=MODEL, instructions="You are a careful bank teller.", tools=BANKING_TOOLS
        ),
    )
    return "teller"
