"""The required-work bound driven as `bench.load` drives it (its servers' arguments, its clients, over HTTP on
loopback), on both backends: many clients of the one principal `local`, every one with a question open at once.
A bound that refused a question the load's cap allows, or gave a call another call's answer, would put a broken
server's rate in the load table."""

import os
import re
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT

from bench.load import REQUIRED, REVISIONS, Phase, database, drive, revision, server_process
from bench.servers import http_client, required_args
from policy.testing import ScriptedResponder
from tests.bench.test_required_server import sql

BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get("BANKGATE_TEST_POSTGRES_URL") else [])]
CLIENTS = 32
"""The load's usual count, past bankgate's default cap of 20 open questions a principal."""
CALLS = 10
"""Each client's calls: enough that every one of them asks (the load's mix is about half questions)."""


class Gathering:
    """Holds each client's first question until every client has one open, or has finished without asking."""

    def __init__(self, clients: int) -> None:
        self._left = clients
        self.asked = 0
        self.everyone = anyio.Event()

    def arrived(self) -> None:
        self._left -= 1
        if not self._left:
            self.everyone.set()


class Answering:
    """One client's answers, through the load's own responder: its first held by `gathering`, each recorded
    under the reference its question states."""

    def __init__(self, gathering: Gathering, answers: dict[int, bool]) -> None:
        self.responder, self._gathering, self._answers = ScriptedResponder(), gathering, answers
        self.waited = False

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        if not self.waited:
            self.waited = True
            self._gathering.asked += 1
            self._gathering.arrived()
            await self._gathering.everyone.wait()
        answer = await self.responder(context, params)
        assert isinstance(answer, types.ElicitResult), answer  # the scripted answer fitted the form
        [reference] = re.findall(r"Reference: APR-([0-9A-F]{10})", params.message)
        self._answers[int(reference, 16)] = bool((answer.content or {}).get("approve"))
        return answer


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_clients_of_one_principal_each_get_their_own_answer_and_no_cap_refusal(
    backend: str, tmp_path: Path
) -> None:
    postgres = os.environ["BANKGATE_TEST_POSTGRES_URL"] if backend == "postgresql" else None
    phase, gathering = Phase(REQUIRED, CLIENTS), Gathering(CLIENTS)
    answers: dict[int, bool] = {}

    async def one(url: str, number: int) -> None:
        answering = Answering(gathering, answers)
        callback: ElicitationFnT = answering
        mode = "legacy" if revision(number) == REVISIONS[1] else "auto"
        async with http_client(url, elicitation_callback=callback, mode=mode) as client:
            await drive(phase, number, client, None, answering.responder, float("inf"), CALLS)
        if not answering.waited:
            gathering.arrived()

    async def load(url: str) -> None:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as clients:
                for number in range(CLIENTS):
                    clients.start_soon(one, url, number)

    with database(postgres, tmp_path) as db_url:
        bound_url = db_url if postgres else f"sqlite:///{tmp_path / 'required.db'}"
        with server_process(required_args(bound_url), tmp_path / "required.log") as (_, url):
            anyio.run(load, url)
        statuses = dict(sql(bound_url, "SELECT id, status FROM required_approvals"))
        moved = sql(bound_url, "SELECT approval, count(*), sum(minor) FROM required_entries GROUP BY approval")

    assert phase.errors == {}  # no refusal; each call said what its own answer asked for (a close: executed)
    assert gathering.asked == CLIENTS  # every client had a question open at once
    assert {"transfer-approved", "transfer-rejected"} <= phase.calls.keys()
    assert statuses == {approval: "executed" if yes else "rejected" for approval, yes in answers.items()}
    assert {approval for approval, _, _ in moved} <= {approval for approval, yes in answers.items() if yes}
    assert all((legs, total) == (2, 0) for _, legs, total in moved)
