"""Load: many MCP clients over HTTP doing a realistic mix for a bounded time, then the books.

    python -m bench.load [--clients 8 32] [--seconds 8] [--rounds 2] [--max-calls 2000] [--postgres-url URL]
                         [--json] [--profile OUT.pstats]

Each client runs, until the phase's time is up (or it made `--max-calls` calls): balances
(about half the calls), transfers its scripted approver approves, transfers it rejects,
and now and then the close of an account of its own (typing the id back). Every gated call
carries an idempotency key and a memo naming it. One `bankgate-mcp serve --transport http`
subprocess on loopback serves every phase under the shipped policy, on a fresh SQLite ledger
(or a throwaway PostgreSQL schema). The baseline is the bare SDK server (`bench.bare_server`)
driven with the same mix by the same number of clients in the same run: `echo` for a
balance, `approve_noop` (one elicitation, no body) for a transfer or a close. Beside both, the
floor (`bench.floor_server`): a bare SDK server doing, on the same database, only the durable
work each call of the mix must do; its rate over the bare server's is the most any gate that
keeps its records could reach. And the required work (`bench.required_server`): the floor plus
the policy's decisions, entitlements, the pending-questions cap, questions stored as shown with
their reference and deadline, approvals bound to the exact arguments and used once and in time, a
double-entry journal, and signed audit records of each question and outcome, the cheapest correct
way; its rate over the bare server's is the most any gate keeping bankgate's promises could reach.

The four servers run side by side, and each phase (a number of clients) is driven in `--rounds`
slices of `--seconds / rounds` per subject, in the order bankgate, bare, floor, required, then the
reverse (ABCD DCBA ...): on a machine whose speed drifts (a shared VM's does, by up to 2x within minutes), a
ratio then compares subjects measured across the same stretch of time, not one subject's good
minute against another's bad one. Each subject's slices are merged into its figures. A slice's rate
is the calls that ended within its window over the window: the calls still running as it closes end
afterwards (their latencies are shown and the books count them), but the time spent waiting for them
is not measured: it would make the rate depend on how each subject's last calls drain.

Printed per phase: throughput, p50/p99 per kind of call and per protocol revision of the
clients (a quarter speak 2025-11-25), errors, the server's RSS at the
start and end, its CPU time per call (and how much of it the event loop's thread used, the rest
being database worker threads and the audit sequencer), its threads' context switches per call, and Little's
law's mean latency (clients / throughput:
what any server doing that many calls a second makes a client wait on average, whatever it
does). For bankgate, how far the audit sequencer fell behind: the most records waiting to be
chained and the age of the oldest, sampled every 0.2 s, and how long after the phase the last
was chained. `--profile` runs bankgate's server under `bench.profiled` (CPU time per function,
every thread; several times slower, so its throughput means nothing).

Afterwards: ledger invariants, `bankgate-mcp audit verify`, and every acknowledged transfer
present exactly once (none lost, none doubled); exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import psycopg
from mcp import Client
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import floor_server
from bench.progress import progress
from bench.rounds import alternating
from bench.servers import BARE_ARGS, TOKEN, audit_key, bench_audit, free_port, http_client, ours_args, required_args
from mcp_server.audit.keys import load_keyring
from mcp_server.audit.reader import verify
from mcp_server.ledger.books import Ledger
from mcp_server.ledger.entitlements import EntitlementAdmin
from mcp_server.storage.database import Database
from policy.idempotency_key import IDEMPOTENCY_KEY_META
from policy.testing import Answer, ScriptedResponder, approve, reject

KEY = IDEMPOTENCY_KEY_META
MIX = (("balance", 52), ("transfer-approved", 30), ("transfer-rejected", 15), ("close", 3))
KINDS = tuple(kind for kind, _ in MIX)
REVISIONS = ("2026-07-28", "2025-11-25")
ACCOUNTS = len(floor_server.SHARED)
OPENING = "20000.00"
CLOSABLE_PER_CLIENT = 3
CALL_TIMEOUT = 60.0
EXPECTED = {"balance": {"executed"}, "transfer-approved": {"executed"}, "transfer-rejected": {"rejected"},
            "close": {"executed"}}  # fmt: skip


@dataclass(frozen=True)
class Subject:
    """What a phase drives: the tool that serves each kind of call."""

    name: str
    balance: str
    transfer: str
    close: str


BANKGATE = Subject("bankgate", "get_account_balance", "transfer_funds", "close_account")
BARE = Subject("bare SDK", "echo", "approve_noop", "approve_noop")
FLOOR = Subject("floor", "floor_balance", "floor_transfer", "floor_close")
REQUIRED = Subject("required", "required_balance", "required_transfer", "required_close")


def arguments(
    subject: Subject, kind: str, source: str, target: str, amount: str, memo: str, account: str
) -> dict[str, str]:
    """The call's arguments as `subject`'s tool takes them (the bare no-op takes a transfer's, always)."""
    if kind == "balance":
        return {"account_id": source}
    if subject is BARE:
        return {"from_account": source, "to_account": target, "amount": "1.00"}
    if kind == "close":
        return {"account_id": account, "sweep_to": target} | ({"memo": memo} if subject in (FLOOR, REQUIRED) else {})
    return {"from_account": source, "to_account": target, "amount": amount, "memo": memo}


@dataclass
class Lag:
    """How far the audit sequencer fell behind the writers during a phase."""

    most_unchained: int = 0
    oldest_s: float = 0.0
    unchained_at_end: int = 0
    drained_s: float | None = None

    def figures(self) -> dict[str, Any]:
        return {
            "most_unchained": self.most_unchained,
            "oldest_unchained_s": round(self.oldest_s, 2),
            "unchained_at_end": self.unchained_at_end,
            "chained_all_after_s": round(self.drained_s, 2) if self.drained_s is not None else None,
        }


@dataclass
class Phase:
    subject: Subject
    clients: int
    first_client: int = 0
    seconds: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    by_revision: dict[str, list[float]] = field(default_factory=dict)
    """Every call's latency by its client's protocol revision: one waits on more hand-offs between tasks
    than the other (a session's streams), so a loop slow to come round delays it more."""
    errors: Counter[str] = field(default_factory=Counter)
    rss_start_kib: int | None = None
    rss_end_kib: int | None = None
    server_cpu_s: float | None = None
    loop_cpu_s: float | None = None
    """Of `server_cpu_s`, the main thread's: the event loop (HTTP, MCP, the tools' own code); the rest is
    worker threads (database calls) and the audit sequencer."""
    switches: int | None = None
    """Context switches of the server's threads during the phase: the cost of handing work (and the
    GIL) between threads shows here first."""
    client_cpu_s: float = 0.0
    executed_memos: set[str] = field(default_factory=set)
    refused_memos: set[str] = field(default_factory=set)
    lag: Lag | None = None

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def figures(self) -> dict[str, Any]:
        per_kind = {kind: percentiles(self.latencies[kind]) for kind in KINDS if self.latencies.get(kind)}
        per_revision = {
            f"{name} clients": percentiles(values) for name in REVISIONS if (values := self.by_revision.get(name))
        }
        switches = round(self.switches / self.total, 1) if self.switches is not None and self.total else None
        return {
            "subject": self.subject.name,
            "clients": self.clients,
            "calls": self.total,
            "seconds": round(self.seconds, 2),
            "calls_per_s": round(self.rate, 1),
            "per_kind": per_kind,
            "per_revision": per_revision,
            "errors": dict(self.errors),
            "rss_start_mib": mib(self.rss_start_kib),
            "rss_end_mib": mib(self.rss_end_kib),
            "server_cpu_s": round(self.server_cpu_s, 2) if self.server_cpu_s is not None else None,
            "server_cpu_ms_per_call": per_call_ms(self.server_cpu_s, self.total),
            "loop_cpu_ms_per_call": per_call_ms(self.loop_cpu_s, self.total),
            "switches_per_call": switches,
            "little_mean_ms": round(self.clients / self.rate * 1000, 1) if self.rate else None,
            "load_generator_cpu_s": round(self.client_cpu_s, 2),
            "sequencer": self.lag.figures() if self.lag is not None else None,
        }


def revision(number: int) -> str:
    """The protocol revision client `number` speaks: a quarter of the clients speak 2025-11-25."""
    return REVISIONS[1] if number % 4 == 3 else REVISIONS[0]


def percentiles(latencies: list[float]) -> dict[str, Any]:
    values = sorted(latencies)
    return {
        "calls": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 2),
    }


def per_call_ms(seconds: float | None, calls: int) -> float | None:
    return round(seconds * 1000 / calls, 2) if seconds is not None and calls else None


def mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib is not None else None


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time process `pid` (or its thread `thread`) has used, from /proc."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Context switches (voluntary and not) of the live threads of process `pid` so far, from /proc
    (the kernel counts them per thread; a thread that has ended is no longer counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
    return total


def rss_kib(pid: int) -> int:
    """Resident set size in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


@contextmanager
def server_process(
    args: list[str], log: Path, startup_s: float = 30.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server subprocess on a free loopback port (`bench.servers.http_server`, keeping the pid)."""
    port = free_port()
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            [sys.executable, *args, "--transport", "http", "--port", str(port)],
            env={**os.environ, "BANKGATE_TOKENS": f"local={TOKEN}"},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {args} did not start; see {log}")
            try:
                httpx2.post(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        yield process, f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Books:
    """The benchmark's ledger: funded accounts shared by all, and a few closable ones per client."""

    def __init__(self, url: str, clients: int, workdir: Path) -> None:
        self.url = url
        self.db = Database.open(url)
        audit = bench_audit(workdir)
        self.ledger = Ledger(self.db, audit=audit)
        # the clients' principal: every account
        EntitlementAdmin(self.db, "bench", audit).grant_role("local", "operator")
        self.shared = [self.ledger.create_account(f"Load {n}").id for n in range(ACCOUNTS)]
        for account in self.shared:
            self.ledger.deposit(account, OPENING)
        self.closable = [
            [self.ledger.create_account(f"Closable {c}-{n}").id for n in range(CLOSABLE_PER_CLIENT)]
            for c in range(clients)
        ]
        for accounts in self.closable:
            self.ledger.deposit(accounts[0], "5.00")  # one with money to sweep, the others empty
        self.total = self.customer_total()

    def customer_total(self) -> int:
        query = text("SELECT SUM(balance_minor) FROM accounts WHERE kind = 'customer'")
        return int(self.db.read(lambda conn: conn.execute(query).scalar_one()))

    def memo_counts(self, prefix: str) -> Counter[str]:
        query = text("SELECT memo, COUNT(*) FROM transactions WHERE memo LIKE :p GROUP BY memo")
        rows = self.db.read(lambda conn: conn.execute(query, {"p": prefix + "%"}).all())
        return Counter({str(memo): int(n) for memo, n in rows})

    def unchained(self) -> tuple[int, float]:
        """Records waiting for the sequencer, and the age in seconds of the oldest (its rid starts with
        the writer's clock in hex nanoseconds, see `audit.writer`)."""
        query = text("SELECT COUNT(*), MIN(rid) FROM audit_log WHERE seq IS NULL")
        count, oldest = self.db.read(lambda conn: conn.execute(query).one())
        age = time.time() - int(str(oldest)[:16], 16) / 1e9 if oldest else 0.0
        return int(count), age

    def closed(self, account_id: str) -> bool:
        return self.ledger.balance(account_id).status == "closed"


def answer(subject: Subject, kind: str, account: str) -> Answer:
    """The scripted approver's answer to a call of `kind`: the required work's close asks for the account id typed
    back under its own field name; every other form's confirmation the responder types back itself."""
    yes = kind != "transfer-rejected"
    if subject is REQUIRED and kind == "close":
        return Answer("accept", {"approve": yes, "account_id": account})
    return approve() if yes else reject()


async def drive(
    phase: Phase,
    number: int,
    client: Client,
    books: Books | None,
    responder: ScriptedResponder,
    deadline: float,
    max_calls: int,
) -> None:
    subject = phase.subject
    index = phase.first_client + number  # the client's, unique over the run's phases and rounds
    rng = random.Random(index * 7919 + phase.clients)
    if books is not None:
        closable, shared = list(books.closable[index]), books.shared
    else:
        closable, shared = floor_server.closable(index), list(floor_server.SHARED)
    for n in range(max_calls):
        if time.monotonic() >= deadline:
            return
        kind = rng.choices(KINDS, weights=[w for _, w in MIX])[0]
        if kind == "close" and not closable:
            kind = "balance"
        memo = f"load-{phase.clients}-{index}-{n}"
        source, target = rng.sample(shared, 2)
        amount = f"{rng.randint(101, 2000) / 100:.2f}"
        account = closable.pop() if kind == "close" else ""
        tool = {"balance": subject.balance, "close": subject.close}.get(kind, subject.transfer)
        args = arguments(subject, kind, source, target, amount, memo, account)
        if kind != "balance":  # this call's answer only: one refused before asking leaves none for the next
            responder.script = [answer(subject, kind, account)]
        started = time.perf_counter()
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                result = await client.call_tool(tool, args, meta={KEY: memo})  # type: ignore[arg-type]  # every subject's
        except Exception as exc:  # counted, and the client carries on
            phase.errors[f"{kind}: {type(exc).__name__}"] += 1
            continue
        latency = time.perf_counter() - started
        phase.latencies.setdefault(kind, []).append(latency)
        phase.by_revision.setdefault(revision(number), []).append(latency)
        if time.monotonic() <= deadline:  # a call ending after the window is not its work (`run_phase`)
            phase.calls[kind] += 1
        if books is None:
            said = result.content[0].text if result.content and isinstance(result.content[0], types.TextContent) else ""
            if result.is_error or (subject is not BARE and kind != "balance" and said not in EXPECTED[kind]):
                phase.errors[f"{kind}: {said[:80] or 'tool error'}"] += 1
            continue
        status = (result.structured_content or {}).get("status")
        if status not in EXPECTED[kind]:
            code = ((result.structured_content or {}).get("error") or {}).get("code")
            phase.errors[f"{kind}: {status} {code or ''}".strip()] += 1
        if kind.startswith("transfer"):
            (phase.executed_memos if status == "executed" else phase.refused_memos).add(memo)


async def run_phase(
    subject: Subject,
    url: str,
    clients: int,
    seconds: float,
    max_calls: int,
    books: Books | None,
    pid: int | None,
    first_client: int = 0,
) -> Phase:
    phase = Phase(subject, clients, first_client)
    phase.rss_start_kib = rss_kib(pid) if pid else None

    async def one(number: int, started: anyio.Event, deadline_box: list[float]) -> None:
        responder = ScriptedResponder()  # every subject's: the clients' answering work is the same
        mode = "legacy" if revision(number) == REVISIONS[1] else "auto"
        async with http_client(url, elicitation_callback=responder, mode=mode) as client:
            await started.wait()
            await drive(phase, number, client, books, responder, deadline_box[0], max_calls)

    started, deadline_box = anyio.Event(), [0.0]
    with anyio.fail_after(seconds + CALL_TIMEOUT + 60):
        async with anyio.create_task_group() as group:
            async with anyio.create_task_group() as calls:
                for number in range(clients):
                    calls.start_soon(one, number, started, deadline_box)
                await anyio.sleep(0.5)  # let every client connect before the clock starts
                cpu_before = cpu_seconds(pid) if pid else None
                loop_before = cpu_seconds(pid, pid) if pid else None
                switches_before = context_switches(pid) if pid else None
                client_before = time.process_time()
                begin = time.monotonic()
                deadline_box[0] = begin + seconds
                started.set()
                if books is not None:
                    phase.lag = Lag()
                    group.start_soon(watch_sequencer, books, phase.lag)
                await anyio.sleep_until(deadline_box[0])  # the window closes: its figures are read now
                phase.seconds = time.monotonic() - begin
                phase.client_cpu_s = time.process_time() - client_before
                if pid and cpu_before is not None and loop_before is not None:
                    phase.server_cpu_s = cpu_seconds(pid) - cpu_before
                    phase.loop_cpu_s = cpu_seconds(pid, pid) - loop_before
                if pid and switches_before is not None:
                    phase.switches = context_switches(pid) - switches_before
            group.cancel_scope.cancel()
    phase.rss_end_kib = rss_kib(pid) if pid else None
    if books is not None and phase.lag is not None:
        await drained(books, phase.lag, time.perf_counter())
    return phase


async def watch_sequencer(books: Books, lag: Lag) -> None:
    """Sample the records waiting to be chained until cancelled."""
    while True:
        count, age = await anyio.to_thread.run_sync(books.unchained)
        lag.most_unchained, lag.oldest_s = max(lag.most_unchained, count), max(lag.oldest_s, age)
        await anyio.sleep(0.2)


async def drained(books: Books, lag: Lag, since: float) -> None:
    """How long after `since` the sequencer has chained everything (None if not within a minute)."""
    lag.unchained_at_end, _ = await anyio.to_thread.run_sync(books.unchained)
    count = lag.unchained_at_end
    while count and time.perf_counter() - since < 60:
        await anyio.sleep(0.05)
        count, _ = await anyio.to_thread.run_sync(books.unchained)
    lag.drained_s = time.perf_counter() - since if not count else None


def check_books(books: Books, phases: list[Phase], key: Path) -> dict[str, Any]:
    """The books after the run, the audit verified (in process and by the CLI) under the servers' `key`."""
    executed = set().union(*(p.executed_memos for p in phases))
    refused = set().union(*(p.refused_memos for p in phases))
    counts = books.memo_counts("load-")
    verified = verify(books.db, load_keyring(key))
    audit_count, findings = verified.records + verified.pending, verified.findings
    cli = subprocess.run(
        [sys.executable, "-m", "mcp_server", "audit", "verify", "--db", books.url, "--audit-key-file", str(key)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return {
        "acknowledged_transfers": len(executed),
        "lost": len(executed - counts.keys()),
        "duplicated": sum(1 for n in counts.values() if n > 1),
        "refused_but_present": len(refused & counts.keys()),
        "unacknowledged_present": len(counts.keys() - executed),
        "invariant_violations": books.ledger.check_invariants(),
        "money_conserved": books.customer_total() == books.total,
        "audit_records": audit_count,
        "audit_findings": len(findings),
        "audit_verify_exit": cli.returncode,
        "audit_verify_says": cli.stdout.strip() or cli.stderr.strip(),
    }


def sound(check: dict[str, Any]) -> bool:
    return (
        check["lost"] == check["duplicated"] == check["refused_but_present"] == check["unacknowledged_present"] == 0
        and not check["invariant_violations"]
        and check["money_conserved"]
        and check["audit_findings"] == 0
        and check["audit_verify_exit"] == 0
    )


@contextmanager
def database(postgres_url: str | None, workdir: Path) -> Iterator[str]:
    if not postgres_url:
        yield f"sqlite:///{workdir / 'ledger.db'}"
        return
    base = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    schema = f"bankgate_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def merged(slices: list[Phase]) -> Phase:
    """One subject's slices of a phase (its rounds) as one phase: their calls, latencies, time and CPU summed."""
    first, last = slices[0], slices[-1]
    phase = Phase(first.subject, first.clients, first.first_client, rss_start_kib=first.rss_start_kib)
    phase.rss_end_kib = last.rss_end_kib
    for part in slices:
        phase.seconds += part.seconds
        phase.calls += part.calls
        phase.errors += part.errors
        for kind, values in part.latencies.items():
            phase.latencies.setdefault(kind, []).extend(values)
        for name, values in part.by_revision.items():
            phase.by_revision.setdefault(name, []).extend(values)
        phase.client_cpu_s += part.client_cpu_s
        phase.executed_memos |= part.executed_memos
        phase.refused_memos |= part.refused_memos
    phase.server_cpu_s = _summed([part.server_cpu_s for part in slices])
    phase.loop_cpu_s = _summed([part.loop_cpu_s for part in slices])
    switches = _summed([part.switches for part in slices])
    phase.switches = int(switches) if switches is not None else None
    lags = [part.lag for part in slices if part.lag is not None]
    if lags:
        drained = [lag.drained_s for lag in lags]
        phase.lag = Lag(
            most_unchained=max(lag.most_unchained for lag in lags),
            oldest_s=max(lag.oldest_s for lag in lags),
            unchained_at_end=max(lag.unchained_at_end for lag in lags),
            drained_s=None if None in drained else max(d for d in drained if d is not None),
        )
    return phase


def _summed(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


async def interleaved(
    servers: dict[Subject, tuple[str, int]],
    client_counts: list[int],
    seconds: float,
    rounds: int,
    max_calls: int,
    books: Books,
) -> dict[Subject, list[Phase]]:
    """Each phase driven in `rounds` slices per subject, in the servers' order and then the reverse, so
    drift in the machine's speed falls on every subject alike; each subject's slices merged."""
    subjects = list(servers)
    first = dict.fromkeys(subjects, 0)
    phases: dict[Subject, list[Phase]] = {subject: [] for subject in subjects}
    for clients in client_counts:
        slices: dict[Subject, list[Phase]] = {subject: [] for subject in subjects}
        for turn, subject in alternating(subjects, rounds):
            url, pid = servers[subject]
            progress(f"load: {subject.name}, {clients} clients, {seconds / rounds:g} s (round {turn + 1}/{rounds})")
            own = books if subject is BANKGATE else None
            part = await run_phase(subject, url, clients, seconds / rounds, max_calls, own, pid, first[subject])
            slices[subject].append(part)
            first[subject] += clients
        for subject in subjects:
            phases[subject].append(merged(slices[subject]))
    return phases


async def run(
    client_counts: list[int],
    seconds: float,
    max_calls: int,
    postgres_url: str | None,
    profile: Path | None = None,
    rounds: int = 2,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bankgate-load-"))
    with database(postgres_url, workdir) as url, ExitStack() as stack:
        books = Books(url, sum(client_counts) * rounds, workdir)
        args = ours_args(url, workdir)
        if profile is not None:
            args = ["-m", "bench.profiled", str(profile), *args]
        startup = 30.0 if profile is None else 180.0  # imports under the profiler are several times slower
        floor_url = url if postgres_url else f"sqlite:///{workdir / 'floor.db'}"
        required_url = url if postgres_url else f"sqlite:///{workdir / 'required.db'}"
        servers: dict[Subject, tuple[str, int]] = {}
        for subject, server_args, wait in (
            (BANKGATE, args, startup),
            (BARE, BARE_ARGS, 30.0),
            (FLOOR, ["-m", "bench.floor_server", "--db", floor_url], 30.0),
            (REQUIRED, required_args(required_url), 30.0),
        ):
            process, server_url = stack.enter_context(
                server_process(server_args, workdir / f"{subject.name}.log", wait)
            )
            servers[subject] = (server_url, process.pid)
        by_subject = await interleaved(servers, client_counts, seconds, rounds, max_calls, books)
        stack.close()  # the servers stop (a profiled one writes its statistics) before the books are checked
        phases, baselines, floors, bounds = (by_subject[s] for s in (BANKGATE, BARE, FLOOR, REQUIRED))
        progress("load: checking the books and the audit chain")
        check = check_books(books, phases, audit_key(workdir))
        books.db.close()
    return {
        "benchmark": "load",
        "backend": "postgresql" if postgres_url else "sqlite",
        "mix_percent": dict(MIX),
        "seconds_per_phase": seconds,
        "rounds": rounds,
        "rows": [
            {
                "clients": ours.clients,
                "ours": ours.figures(),
                "baseline": base.figures(),
                "floor": floor.figures(),
                "ratio": ratio(ours, base),
                "ratio_to_floor": ratio(ours, floor),
                "floor_ratio": ratio(floor, base),
                "required": bound.figures(),
                "ratio_to_required": ratio(ours, bound),
                "required_ratio": ratio(bound, base),
            }
            for ours, base, floor, bound in zip(phases, baselines, floors, bounds, strict=True)
        ],
        "books": check,
        "sound": sound(check),
    }


def ratio(subject: Phase, baseline: Phase) -> float | None:
    return round(subject.rate / baseline.rate, 3) if baseline.rate else None


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nload ({report['backend']}, {report['seconds_per_phase']:.0f} s per phase in {report.get('rounds', 1)} "
        f"alternating rounds, mix % {report['mix_percent']})"
    )
    print(f"{'clients':>7}  {'subject':<10}{'calls/s':>9}{'ratio':>7}{'calls':>7}{'errors':>7}"
          f"  {'server RSS MiB':<16}{'CPU s server/gen':<17}{'CPU ms/call (loop)':>18}{'switches':>9}"
          f"{'Little ms':>10}")  # fmt: skip
    for row in report["rows"]:
        shown = (
            (row["baseline"], ""),
            (row["floor"], f"{row['floor_ratio']:.2f}"),
            (row["required"], f"{row['required_ratio']:.2f}"),
            (row["ours"], f"{row['ratio']:.2f}"),
        )
        for figures, ratio in shown:
            rss = f"{figures['rss_start_mib']} → {figures['rss_end_mib']}"
            cpu = f"{figures['server_cpu_s']} / {figures['load_generator_cpu_s']}"
            per_call = f"{figures['server_cpu_ms_per_call']} ({figures['loop_cpu_ms_per_call']})"
            errors = sum(figures["errors"].values())
            print(f"{row['clients']:>7}  {figures['subject']:<10}{figures['calls_per_s']:>9.0f}{ratio:>7}"
                  f"{figures['calls']:>7}{errors:>7}  {rss:<16}{cpu:<17}{per_call:>18}"
                  f"{figures.get('switches_per_call')!s:>9}{figures['little_mean_ms']!s:>10}")  # fmt: skip
            if figures["errors"]:
                print(f"{'':>9}errors: {figures['errors']}")
            lag = figures["sequencer"]
            if lag is not None:
                print(f"{'':>9}audit sequencer: at most {lag['most_unchained']} records unchained (oldest "
                      f"{lag['oldest_unchained_s']} s), {lag['unchained_at_end']} at the end, all chained "
                      f"{lag['chained_all_after_s']} s later")  # fmt: skip
    print(f"\n{'clients':>7}  {'subject':<10}{'call':<20}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}")
    for row in report["rows"]:
        for figures in (row["baseline"], row["floor"], row["required"], row["ours"]):
            for kind, k in {**figures["per_kind"], **figures.get("per_revision", {})}.items():
                print(f"{row['clients']:>7}  {figures['subject']:<10}{kind:<20}{k['calls']:>7}{k['p50_ms']:>9.1f}"
                      f"{k['p99_ms']:>9.1f}")  # fmt: skip
    check = report["books"]
    print(
        f"\nafter the run: {check['acknowledged_transfers']} acknowledged transfers, {check['lost']} lost, "
        f"{check['duplicated']} duplicated, {check['refused_but_present']} refused yet present; invariants "
        f"{'hold' if not check['invariant_violations'] else check['invariant_violations']}; money "
        f"{'conserved' if check['money_conserved'] else 'NOT conserved'}; audit: {check['audit_verify_says']}"
    )
    print("books sound" if report["sound"] else "BOOKS NOT SOUND")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32], help="concurrent clients per phase")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase (bounded to 600)")
    parser.add_argument("--rounds", type=int, default=2, help="slices each phase is driven in per subject, alternating")
    parser.add_argument("--max-calls", type=int, default=2000, help="most calls one client makes in a phase")
    parser.add_argument("--postgres-url", default=None, help="run on a throwaway schema of this PostgreSQL")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--profile", type=Path, help="profile bankgate's server into this pstats file (bench.profiled)")
    args = parser.parse_args()
    most = floor_server.MOST_CLIENTS
    if not 0 < args.seconds <= 600 or not all(c > 0 for c in args.clients) or args.rounds < 1:
        parser.error("--seconds must be in (0, 600], --clients positive and --rounds at least 1")
    if sum(args.clients) * args.rounds > most:
        parser.error(f"--clients times --rounds may come to at most {most} clients over all phases")
    report = anyio.run(run, args.clients, args.seconds, args.max_calls, args.postgres_url, args.profile, args.rounds)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    if not report["sound"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
