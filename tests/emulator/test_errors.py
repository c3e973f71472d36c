"""Validation, auth and injected faults, as the openai and azure SDKs see them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest
from azure.ai.projects import AIProjectClient
from openai import OpenAI

from agent_host.emulator import Emulator, FaultConfig, FaultStats

from .helpers import agent

BALANCE = "What is the balance of ACC-001?"


@pytest.fixture
def bare_client(emulator: Emulator) -> Iterator[OpenAI]:
    """An OpenAI client built by hand, as a host would with a plain bearer token."""
    with OpenAI(
        base_url=emulator.endpoint + "/openai/v1", api_key=emulator.token, _strict_response_validation=True
    ) as client:
        yield client


def test_unanswered_function_call_is_rejected(openai_client: OpenAI, teller: str) -> None:
    first = openai_client.responses.create(input=BALANCE, extra_body=agent(teller))
    call_id = first.output[0].call_id  # type: ignore[union-attr]

    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(input="never mind", previous_response_id=first.id, extra_body=agent(teller))

    assert caught.value.message.endswith(f"No tool output found for function call {call_id}.")
    assert (caught.value.param, caught.value.code, caught.value.type) == ("input", None, "invalid_request_error")


def test_output_for_an_unknown_call_is_rejected(openai_client: OpenAI, teller: str) -> None:
    first = openai_client.responses.create(input=BALANCE, extra_body=agent(teller))

    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            input=[{"type": "function_call_output", "call_id": "call_bogus", "output": "{}"}],
            previous_response_id=first.id,
            extra_body=agent(teller),
        )

    assert "No tool call found for function call output with call_id call_bogus." in caught.value.message
    assert caught.value.param == "input"


def test_unknown_previous_response(openai_client: OpenAI, teller: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(input="hi", previous_response_id="resp_missing", extra_body=agent(teller))

    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert caught.value.body == {
        "message": "Previous response with id 'resp_missing' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


def test_unknown_agent_version_and_response_are_not_found(openai_client: OpenAI, teller: str) -> None:
    with pytest.raises(openai.NotFoundError, match="Agent 'ghost' not found"):
        openai_client.responses.create(input="hi", extra_body=agent("ghost"))
    with pytest.raises(openai.NotFoundError, match="Version '7' of agent 'teller' not found"):
        openai_client.responses.create(input="hi", extra_body=agent(teller, "7"))
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.responses.retrieve("resp_missing")
    assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"input": 42, "agent_reference": {"type": "agent_reference", "name": "teller"}}, "input"),
        (
            {
                "input": [{"role": "robot", "content": "hi"}],
                "agent_reference": {"type": "agent_reference", "name": "teller"},
            },
            "input[0].role",
        ),
        (
            {
                "input": [{"type": "function_call_output", "output": "{}"}],
                "agent_reference": {"type": "agent_reference", "name": "teller"},
            },
            "input[0].call_id",
        ),
        ({"input": "hi", "agent_reference": {"name": "teller"}}, "agent_reference"),
        ({"input": "hi", "agent_reference": {"type": "agent_reference", "name": "teller"}, "stream": "yes"}, "stream"),
    ],
)
def test_malformed_bodies_name_the_param(bare_client: OpenAI, teller: str, body: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        bare_client.post("/responses", body=body, cast_to=object)

    assert caught.value.param == param and caught.value.type == "invalid_request_error"


def test_missing_and_wrong_tokens_are_authentication_errors(emulator: Emulator) -> None:
    for api_key, message in (
        ("wrong", "not valid"),
        (f"{emulator.token}@https://cognitiveservices.azure.com", "request a token for https://ai.azure.com"),
    ):
        with (
            OpenAI(base_url=emulator.endpoint + "/openai/v1", api_key=api_key, max_retries=0) as client,
            pytest.raises(openai.AuthenticationError) as caught,
        ):
            client.responses.create(input="hi", extra_body=agent("teller"))
        assert caught.value.status_code == 401
        assert caught.value.code == "PermissionDenied" and message in caught.value.message


def test_rate_limits_are_retried_honouring_retry_after(emulator: Emulator, bare_client: OpenAI, teller: str) -> None:
    emulator.faults.reset_stats()
    emulator.faults.arm(FaultConfig(rate_limited=2, retry_after=0.05, target="responses"))

    started = time.monotonic()
    response = bare_client.responses.create(input=BALANCE, extra_body=agent(teller))
    elapsed = time.monotonic() - started

    assert response.status == "completed"
    assert emulator.faults.stats == FaultStats(requests=3, served=1, rate_limited=2, server_errors=0)
    # Two 50 ms waits, or openai's own backoff (0.5 s, then 1 s, less up to 25% jitter: 1.125 s at least) or the
    # whole-second retry-after (2 s): under 1 s means retry-after-ms was honoured, whatever the machine's speed
    # (a loaded one took 0.34 s of the 0.45 s bound this once had).
    assert 0.1 <= elapsed < 1.0


def test_rate_limit_surfaces_after_the_retries_run_out(emulator: Emulator, bare_client: OpenAI, teller: str) -> None:
    emulator.faults.arm(FaultConfig(rate_limited=5, retry_after=0.01))

    with pytest.raises(openai.RateLimitError) as caught:
        bare_client.with_options(max_retries=1).responses.create(input=BALANCE, extra_body=agent(teller))

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.response.headers["retry-after-ms"] == "10"
    assert emulator.faults.stats.rate_limited == 2


def test_server_errors_are_retried_and_streams_retry_before_starting(
    emulator: Emulator, bare_client: OpenAI, teller: str
) -> None:
    emulator.faults.arm(FaultConfig(server_errors=1, target="responses"))
    stream = bare_client.responses.create(input=BALANCE, stream=True, extra_body=agent(teller))
    assert [event.type for event in stream][-1] == "response.completed"

    emulator.faults.arm(FaultConfig(server_errors=3, target="responses"))
    with pytest.raises(openai.InternalServerError) as caught:
        bare_client.with_options(max_retries=0).responses.create(input=BALANCE, extra_body=agent(teller))
    assert caught.value.status_code == 500 and caught.value.code == "server_error"


def test_delay_and_target_filtering(emulator: Emulator, project: AIProjectClient, teller: str) -> None:
    emulator.faults.arm(FaultConfig(delay=0.3, rate_limited=1, target="responses"))
    started = time.monotonic()
    project.agents.get(teller)
    assert time.monotonic() - started < 0.3  # the agents endpoints are not targeted

    emulator.faults.arm(FaultConfig(delay=0.3, target="all"))
    started = time.monotonic()
    project.agents.get(teller)
    assert time.monotonic() - started >= 0.3


def test_azure_core_retries_a_429_after_its_whole_second_retry_after(
    emulator: Emulator, project: AIProjectClient, teller: str
) -> None:
    emulator.faults.arm(FaultConfig(rate_limited=1, retry_after=0.01, target="agents"))

    started = time.monotonic()
    assert project.agents.get(teller).name == teller
    # azure-core reads Retry-After (whole seconds, rounded up) before retry-after-ms.
    assert time.monotonic() - started >= 1.0
    assert emulator.faults.stats.rate_limited == 1


def test_fault_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FaultConfig(rate_limited=-1)
    with pytest.raises(ValueError):
        FaultConfig(delay=-0.1)


def test_error_bodies_are_json_envelopes(emulator: Emulator) -> None:
    with (
        OpenAI(base_url=emulator.endpoint + "/openai/v1", api_key=emulator.token, max_retries=0) as client,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        client.get("/no/such/route", cast_to=object)
    assert json.loads(caught.value.response.text)["error"]["code"] == "not_found"
