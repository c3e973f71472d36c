"""The wire itself, without SDK help: JSON shapes, SSE framing, paging, auth bodies.

Bodies and events are validated with pydantic's strict mode against openai's typed models, which
is stricter than the SDK's own response validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx2
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from agent_host.emulator import Emulator

from .helpers import BANKING_TOOLS, MODEL, parse_sse

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
DEFINITION = {"kind": "prompt", "model": MODEL, "tools": [tool.as_dict() for tool in BANKING_TOOLS]}


@pytest.fixture
def http(emulator: Emulator) -> Iterator[httpx2.Client]:
    headers = {"Authorization": f"Bearer {emulator.token}"}
    with httpx2.Client(base_url=emulator.endpoint, headers=headers, timeout=10) as client:
        client.post("/agents/teller/versions", params={"api-version": "v1"}, json={"definition": DEFINITION})
        yield client


def _create(http: httpx2.Client, **body: Any) -> dict[str, Any]:
    response = http.post(
        "/openai/v1/responses", json={"agent_reference": {"type": "agent_reference", "name": "teller"}, **body}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    payload: dict[str, Any] = response.json()
    return payload


def test_agent_version_wire_shape(http: httpx2.Client) -> None:
    body = http.get("/agents/teller/versions/1", params={"api-version": "v1"}).json()

    assert body["object"] == "agent.version" and body["id"] == "teller:1" and body["version"] == "1"
    assert isinstance(body["created_at"], int) and body["metadata"] == {}
    assert body["definition"] == DEFINITION


def test_paging_ends_with_an_empty_page_whose_last_id_is_null(http: httpx2.Client) -> None:
    http.post("/agents/teller/versions", json={"definition": DEFINITION})
    pages: list[dict[str, Any]] = []
    params: dict[str, str] = {"api-version": "v1", "limit": "1", "order": "asc"}
    while True:
        page = http.get("/agents/teller/versions", params=params).json()
        pages.append(page)
        if page["last_id"] is None:
            break
        params["after"] = page["last_id"]

    assert [[v["id"] for v in p["data"]] for p in pages] == [["teller:1"], ["teller:2"], []]
    assert [p["has_more"] for p in pages] == [True, False, False]
    assert pages[-1] == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "x"}, {"order": "sideways"}, {"after": "teller:9"}])
def test_bad_paging_params_are_400(http: httpx2.Client, params: dict[str, str]) -> None:
    response = http.get("/agents/teller/versions", params=params)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == next(iter(params))


def test_response_body_is_strictly_valid_without_output_text(http: httpx2.Client) -> None:
    body = _create(http, input="What is the balance of ACC-001?")

    assert "output_text" not in body
    parsed = Response.model_validate(body, strict=True)
    assert parsed.output[0].type == "function_call"
    message = _create(http, input="hello")
    assert message["output"][0]["content"][0] == {
        "type": "output_text",
        "text": Response.model_validate(message, strict=True).output_text,
        "annotations": [],
        "logprobs": [],
    }


def test_json_accept_header_still_streams_when_the_body_asks(http: httpx2.Client) -> None:
    body = {"agent_reference": {"type": "agent_reference", "name": "teller"}, "input": "hi", "stream": True}
    with http.stream("POST", "/openai/v1/responses", json=body, headers={"Accept": "application/json"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())

    assert "[DONE]" not in raw
    assert raw.endswith("\n\n")
    events = parse_sse(raw.splitlines())
    for name, data in events:
        assert name == data["type"]
        EVENTS.validate_python(data, strict=True)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))


def test_sse_parser_stops_at_a_done_sentinel() -> None:
    lines = ["event: response.created", 'data: {"type": "response.created"}', "", "data: [DONE]", ""]

    assert parse_sse(lines) == [("response.created", {"type": "response.created"})]


def test_auth_failures_have_the_foundry_shape(emulator: Emulator) -> None:
    with httpx2.Client(base_url=emulator.endpoint) as client:
        missing = client.post("/openai/v1/responses", json={})
        wrong = client.get("/agents/teller", headers={"Authorization": "Bearer nope"})

    for response in (missing, wrong):
        assert response.status_code == 401
        assert set(response.json()["error"]) == {"code", "message"}
        assert response.json()["error"]["code"] == "PermissionDenied"


def test_invalid_json_is_400(http: httpx2.Client) -> None:
    response = http.post("/openai/v1/responses", content=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.anyio
async def test_aiohttp_streams_a_function_call_round_trip(emulator: Emulator, http: httpx2.Client) -> None:
    headers = {"Authorization": f"Bearer {emulator.token}"}
    url = emulator.endpoint + "/openai/v1/responses"
    reference = {"type": "agent_reference", "name": "teller"}
    async with aiohttp.ClientSession(headers=headers) as session:
        body = {"agent_reference": reference, "input": "Close ACC-003 and sweep to ACC-001.", "stream": True}
        async with session.post(url, json=body) as response:
            assert response.status == 200
            lines = [line.decode().rstrip("\r\n") async for line in response.content]
        events = parse_sse(lines)
        for _, data in events:
            EVENTS.validate_python(data, strict=True)
        completed = events[-1][1]["response"]
        [call] = completed["output"]
        assert call["name"] == "close_account"
        assert call["arguments"] == '{"account_id": "ACC-003", "sweep_to": "ACC-001"}'

        answer = {
            "agent_reference": reference,
            "previous_response_id": completed["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": '{"status": "executed"}'}],
        }
        async with session.post(url, json=answer) as response:
            final = Response.model_validate(await response.json(), strict=True)

    assert final.output_text == "Done: account ACC-003 is closed, with the remaining funds swept to ACC-001."
