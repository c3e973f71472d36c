"""A seeded random schedule for the exploring drill (`test_explore.py`), and the run that plays it.

Every decision is drawn from the seed before anything runs: each client's protocol revision, its calls (balance
reads, small and large transfers, closes, retries of its earlier calls under their key, some with the amount
changed), the answer its human gives if asked (yes, no, or never), the replica each (re)connection goes to, and
when a replica is SIGKILLed and restarted or (PostgreSQL) its database sessions ended. Only the timing varies
from run to run; `BANKGATE_DRILL_SEED` (with the same `BANKGATE_DRILL_SECONDS`) replays a schedule.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from policy.testing import ScriptedResponder, approve, reject, silence
from tests.drills.support import ServerProcess, connect
from tests.server.test_stale_connections import end_connections
from tests.support import ASK, answer, keyed, outcome

SEED_ENV = "BANKGATE_DRILL_SEED"
SECONDS_ENV = "BANKGATE_DRILL_SECONDS"
SECONDS = float(os.environ.get(SECONDS_ENV, "40"))
"""How long the clients keep calling, per backend (the checks and restarts come on top)."""
APPROVAL_TIMEOUT = 3.0
"""The servers' approval timeout: a 2025-11-25 human who never answers holds a client this long."""
CALL_TIMEOUT = 30.0
CALLS_A_SECOND = 20
"""Calls drawn per client and second of the run: more than any client gets through (about 10 a second at most)."""


def seed() -> int:
    """`$BANKGATE_DRILL_SEED`, or a fresh one (printed by the test on failure, to replay)."""
    return int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1 << 32))


@dataclass(frozen=True)
class Call:
    """One tool call of one client: `answer` is what its human says if asked: `yes`, `no`, `never`, or `later`
    (2026-07-28: yes, sent before the client's next call, on whatever replica it is connected to by then)."""

    tool: str
    args: dict[str, Any]
    key: str | None
    answer: str


@dataclass
class Seen:
    """What a client saw of one call: its outcome, or that none came (`error`), or that it was left asked."""

    call: Call
    result: dict[str, Any] | None = None
    error: str | None = None
    asked: bool = False
    later: tuple[str | None, types.ElicitResult] | None = None
    """The sealed round a `later` answer goes back to, and the yes it sends."""


@dataclass
class ClientPlan:
    mode: str
    calls: list[Call]
    replicas: list[int]
    """The replica each (re)connection goes to, in turn (waiting while it is down)."""
    seen: list[Seen] = field(default_factory=list)


@dataclass(frozen=True)
class Fault:
    at: float
    """Seconds into the run."""
    kind: str
    """`kill` (SIGKILL, restarted `down` seconds later) or `sessions` (pg_terminate_backend of all servers)."""
    replica: int = 0
    down: float = 0.0


@dataclass
class Schedule:
    seed: int
    replicas: int
    clients: list[ClientPlan]
    faults: list[Fault]


def plan(seed: int, accounts: list[str], *, replicas: int, postgres: bool, seconds: float = SECONDS) -> Schedule:
    """Draw the whole run from `seed`; `replicas` is the most the backend allows (one on SQLite)."""
    rng = random.Random(seed)
    replicas = rng.randint(1, replicas)
    clients: list[ClientPlan] = []
    for n in range(rng.randint(3, 6)):
        steps = round(seconds * CALLS_A_SECOND)
        clients.append(_client(rng, n, accounts, replicas, seed, steps, [p.calls for p in clients]))
    faults = []
    at = rng.uniform(2, 6)
    while at < seconds - 3:
        if postgres and rng.random() < 0.3:
            faults.append(Fault(at, "sessions"))
        else:
            faults.append(Fault(at, "kill", rng.randrange(replicas), rng.uniform(0, 2)))
        at += rng.uniform(4, 10)
    return Schedule(seed, replicas, clients, faults)


def _client(
    rng: random.Random, n: int, accounts: list[str], replicas: int, seed: int, steps: int, others: list[list[Call]]
) -> ClientPlan:
    """Client `n`'s calls; a retry re-sends a keyed call of its own, or one an earlier client (`others`) makes
    about as far into its run, likely at the same moment."""
    calls: list[Call] = []
    for step in range(steps):
        answer = rng.choices(["yes", "no", "never", "later"], [6, 3, 1, 1])[0]
        kind = rng.choices(["balance", "small", "large", "close", "retry"], [3, 3, 5, 0.3, 2])[0]
        keyed = [c for c in calls if c.key is not None]
        if others and rng.random() < 0.3:
            keyed = [c for c in rng.choice(others)[max(0, step - 4) : step + 2] if c.key is not None]
        if kind == "retry" and keyed:
            earlier = rng.choice(keyed)
            args = dict(earlier.args)
            if "amount" in args and rng.random() < 0.3:  # the same key with other arguments
                args["amount"] = f"{rng.randint(101, 3000) / 100:.2f}"
            calls.append(Call(earlier.tool, args, earlier.key, answer))
            continue
        source, target = rng.sample(accounts if rng.random() < 0.2 else accounts[1:], 2)
        memo = f"x{seed}-{n}-{step}"
        key = memo if rng.random() < 0.7 else None
        if kind in ("balance", "retry"):
            calls.append(Call("get_account_balance", {"account_id": source}, None, answer))
        elif kind == "close":  # the first account only, which few transfers touch: the rest stay open
            args = {"account_id": accounts[0], "sweep_to": rng.choice(accounts[1:])}
            calls.append(Call("close_account", args, key, answer))
        else:
            cents = rng.randint(1, 100) if kind == "small" else rng.randint(101, 3000)
            args = {"from_account": source, "to_account": target, "amount": f"{cents / 100:.2f}", "memo": memo}
            calls.append(Call("transfer_funds", args, key, answer))
    mode = rng.choice(["auto", "legacy"])
    return ClientPlan(mode, calls, [rng.randrange(replicas) for _ in range(steps)])


async def play(
    schedule: Schedule,
    servers: list[ServerProcess],
    seconds: float = SECONDS,
    on_fault: Callable[[Fault], None] | None = None,
) -> None:
    """Run every client until `seconds` have passed, while the faults land; every replica is up afterwards.
    `on_fault(fault)` runs (in a thread) once each fault has been repaired: a checkpoint."""
    start = time.monotonic()
    up = [anyio.Event() for _ in servers]
    for event in up:
        event.set()

    async def chaos() -> None:
        for fault in schedule.faults:
            await anyio.sleep(max(0.0, start + fault.at - time.monotonic()))
            if fault.kind == "sessions":
                await anyio.to_thread.run_sync(end_connections, servers[0].db_url)
            else:
                server = servers[fault.replica]
                up[fault.replica] = anyio.Event()
                server.kill()
                await anyio.sleep(fault.down)
                server.start()
                await anyio.to_thread.run_sync(server.wait_ready)
                up[fault.replica].set()
            if on_fault is not None:
                await anyio.to_thread.run_sync(on_fault, fault)

    async def client(plan: ClientPlan) -> None:
        calls = iter(plan.calls)
        pending: Call | None = None
        held: Seen | None = None
        answering: Seen | None = None
        for replica in plan.replicas:
            await up[replica].wait()
            responder = ScriptedResponder()
            try:
                async with connect(servers[replica].url, responder, mode=plan.mode, timeout=CALL_TIMEOUT) as mcp:
                    while time.monotonic() - start < seconds and (pending := next(calls, None)) is not None:
                        if held is not None:
                            answering, held = held, None
                            plan.seen.append(await _answer(mcp, answering))
                            answering = None
                        seen = await _one(mcp, responder, pending, plan.mode)
                        plan.seen.append(seen)
                        held = seen if seen.later is not None else None
                        pending = None
                    return
            except Exception as exc:  # the replica died under the connection: the call has no outcome
                if _is_drill_failure(exc):
                    raise
                if pending is not None:  # its human may have answered before it died
                    plan.seen.append(Seen(pending, error=type(exc).__name__, asked=bool(responder.questions)))
                if answering is not None:  # its yes may have been sent
                    plan.seen.append(Seen(answering.call, error=type(exc).__name__, asked=True))
                held = answering = None  # its question stays pending, or its yes settled it

    async with anyio.create_task_group() as group:
        group.start_soon(chaos)
        for plan in schedule.clients:
            group.start_soon(client, plan)


async def _one(mcp: Client, responder: ScriptedResponder, call: Call, mode: str) -> Seen:
    responder.script[:] = [_reply(call.answer)]
    responder.questions.clear()
    meta = keyed(call.key) if call.key is not None else None
    with anyio.fail_after(CALL_TIMEOUT):
        if call.answer in ("never", "later") and mode == "auto":  # asked and left, for good or for now
            first = await mcp.session.call_tool(call.tool, call.args, allow_input_required=True, meta=meta)
            if isinstance(first, types.InputRequiredResult):
                question = (first.input_requests or {})[ASK]
                assert isinstance(question, types.ElicitRequest), question
                yes = types.ElicitResult(action="accept", content=approve().reply(question.params.message).content)
                return Seen(call, asked=True, later=(first.request_state, yes) if call.answer == "later" else None)
            return Seen(call, outcome(first))
        result = await mcp.call_tool(call.tool, call.args, meta=meta)
    return Seen(call, outcome(result), asked=bool(responder.questions))


async def _answer(mcp: Client, held: Seen) -> Seen:
    """Send the yes to a round asked earlier (`later`); asked again (its approval ended meanwhile), it is left."""
    call = held.call
    assert held.later is not None
    state, yes = held.later
    meta = keyed(call.key) if call.key is not None else None
    with anyio.fail_after(CALL_TIMEOUT):
        result = await answer(mcp, call.tool, call.args, state, yes, meta=meta)
    if isinstance(result, types.InputRequiredResult):
        return Seen(call, asked=True)
    return Seen(call, outcome(result), asked=True)


def _is_drill_failure(exc: BaseException) -> bool:
    """An assertion of the drill's own (an unexpected result), however deep in task groups."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_drill_failure(inner) for inner in exc.exceptions)
    return isinstance(exc, AssertionError)


def _reply(answer: str) -> Any:
    if answer in ("yes", "later"):
        return approve()
    if answer == "no":
        return reject()
    return silence(APPROVAL_TIMEOUT + 1)  # 2025-11-25: the server ends the question at its timeout
