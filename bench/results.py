"""Regenerate docs/RESULTS.md: run every benchmark with `--json` and the drills, then write the page.

    python -m bench.results [--postgres-url URL] [--quick] [--skip NAME ...] [--no-drills] [--output PATH]

Benchmarks are the `bench/*.py` modules with a `main()` and a `--json` flag (today server_bench,
gate_bench, ledger_bench, host_bench, load, and on PostgreSQL only db_ceiling and audit_bench); one
that is missing, fails or prints no JSON is listed as such on the page rather than stopping the run. The drills are
`pytest tests/drills`, with `BANKGATE_DRILL_REPORT` set so each drill appends what it did.
With `--postgres-url` (or `BANKGATE_TEST_POSTGRES_URL`) the ledger benchmark, the load and the
drills also run on PostgreSQL. Never edit the numbers on the page by hand: rerun this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.charts import HOST_TIME, LOAD, RATIOS, render_charts
from bench.progress import progress
from bench.timing import FLOOR, FLOOR_NOTE, OVER_REQUIRED_NOTE, REQUIRED, REQUIRED_NOTE

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ("server_bench", "gate_bench", "ledger_bench", "host_bench", "load", "costs")
NOT_BENCHMARKS = {
    "__init__",
    "servers",
    "timing",
    "bare_server",
    "floor_server",
    "required_server",
    "results",
    "shapes",
}
POSTGRES_ONLY = {"db_ceiling", "audit_bench"}
"""Benchmarks of PostgreSQL alone: run only with a PostgreSQL URL."""
PG_ENV = "BANKGATE_TEST_POSTGRES_URL"
BENCH_TIMEOUT = 1800
QUICK_ARGS = {
    "server_bench": ["--calls", "300"],
    "gate_bench": ["--calls", "150"],
    "ledger_bench": ["--transfers", "800"],
    "host_bench": ["--turns", "15"],
    "load": ["--seconds", "4"],
    "db_ceiling": ["--seconds", "3"],
    "audit_bench": ["--seconds", "2", "--rounds", "1"],
    "costs": ["--calls", "50"],
}
DRILLS = {
    "test_replicas.py": "Two --stateless replicas, one PostgreSQL ledger, one key ring: a round started on A and "
    "answered on B runs once; the same answer raced to both runs once; concurrent clients whose rounds cross "
    "replicas — every acknowledged transfer present exactly once, invariants, audit chain.",
    "test_crash_recovery.py": "SIGKILL of the server under load (SQLite and PostgreSQL, both protocol revisions), "
    "restart on the same database and key ring, every request retried with its idempotency key: acknowledged "
    "results durable and returned unchanged, interrupted ones finish, one transaction per executed key.",
    "test_database_outage.py": "The database cut off under a running server (through a proxy): clear "
    "database_unavailable refusals, /healthz and /readyz report it, nobody is asked, recovery without restart; "
    "an open round completes once afterwards.",
    "test_restart_between_rounds.py": "A 2026-07-28 round sealed before a restart: completes once with the same or "
    "a rotated key ring; refused (-32602) with a foreign ring and the approval expires cleanly; late answers "
    "are 'expired'.",
    "test_fuzz.py": "Hypothesis through a real MCP client on both protocol revisions: arbitrary JSON for every "
    "argument, the idempotency key and the approver's answers — no crash, nothing invalid executed, no money "
    "moved without a clean yes, every refusal a clear error.",
    "test_forgery.py": "Sealed state moved to another tool or idempotency key, a rejection replayed as a yes, "
    "answer content beyond the form, an accept with no content, auto-accepting clients; on PostgreSQL a replay "
    "racing its own settlement and a question built while another transfer commits.",
    "test_http_abuse.py": "Another principal's token on a session or an idempotency key, malformed bodies "
    "(deep nesting, bad UTF-8, batches, chunked oversize, huge headers), slowloris and slow bodies and stalled "
    "approvers while a normal client is served.",
    "test_explore.py": "A seeded random schedule (BANKGATE_DRILL_SEED replays it): concurrent clients on both "
    "protocol revisions reading, transferring (allowed and approved yes/no/never/later), closing and retrying "
    "keys with changed arguments against 1-2 replicas SIGKILLed and restarted (and on PostgreSQL their sessions "
    "ended) — the invariants checked after each fault and at the end.",
}
FIXED = (
    "A 2026-07-28 round replayed while its own answer was settling (PostgreSQL) made a new approval and asked "
    "again instead of returning the original outcome — `test_forgery.py::test_a_round_replayed_while_it_settles_"
    "gets_the_original_outcome`; fixed in 400d21d.",
    "A database that went silent on an open connection hung tool calls and `/readyz` without bound — "
    "`test_database_outage.py::test_a_silent_database_gets_a_clear_error_in_bounded_time`; fixed in 400d21d "
    "(keepalives, `tcp_user_timeout`, a per-call deadline, a 3 s probe).",
    "The approval question read the source balance before locking it, so a transfer committing meanwhile made "
    "'now' and 'after' disagree (PostgreSQL) — `test_forgery.py::test_the_question_shows_one_snapshot_of_the_"
    "balance`; fixed by f5e04a7 (plans on locked rows) while the drill was being written.",
    "On 2026-07-28 an 'accept' with no content was refused by the SDK before the gate saw it: an error without "
    "structured content naming the resolver, the approval left pending, nothing audited (2025-11-25 recorded a "
    "rejection) — `test_forgery.py::test_an_accept_without_content_is_a_recorded_rejection`; fixed in 973caa8.",
)
"""Bugs these drills caught that have since been fixed; each drill now guards against a regression."""


@dataclass
class BenchRun:
    name: str
    command: str
    seconds: float = 0.0
    data: Any = None
    problem: str | None = None


@dataclass
class PerfRow:
    benchmark: str
    configuration: str
    subject: str
    rate: str
    baseline: str
    baseline_rate: str
    ratio: str
    latency: str
    notes: str = ""


@dataclass
class DrillFile:
    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfailed: int = 0
    seconds: float = 0.0
    skip_reasons: set[str] = field(default_factory=set)
    xfail_reasons: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)


def discover() -> list[str]:
    found = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if path.stem not in NOT_BENCHMARKS and "def main(" in source and "--json" in source:
            found.append(path.stem)
    return found


def run_bench(name: str, extra: list[str], env: dict[str, str]) -> BenchRun:
    command = [sys.executable, "-m", f"bench.{name}", *extra, "--json"]
    shown = f"python -m bench.{name} {' '.join([*extra, '--json'])}"
    started = time.monotonic()
    try:
        done = run_passing_stderr(command, env)
    except subprocess.TimeoutExpired:
        return BenchRun(name, shown, BENCH_TIMEOUT, problem=f"did not finish within {BENCH_TIMEOUT} s")
    run = BenchRun(name, shown, time.monotonic() - started)
    progress(f"bench.{name} finished in {run.seconds:.0f} s")
    try:
        run.data = parse_json(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        run.problem = f"exit {done.returncode}, no JSON on stdout ({last[:200]})"
        return run
    if done.returncode != 0:
        run.problem = f"exit {done.returncode} (figures below are what it printed)"
    return run


def run_passing_stderr(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` capturing stdout, while its stderr (its progress lines) is shown as it comes and kept."""
    with (
        tempfile.TemporaryFile("w+") as stdout,
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True) as process,
    ):
        assert process.stderr is not None
        kept: list[str] = []

        def relay(stream: IO[str]) -> None:
            for line in stream:
                kept.append(line)
                print(f"    {line}", end="", file=sys.stderr, flush=True)

        relaying = threading.Thread(target=relay, args=(process.stderr,), daemon=True)
        relaying.start()
        try:
            process.wait(BENCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        relaying.join()
        stdout.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, stdout.read(), "".join(kept))


def parse_json(stdout: str) -> Any:
    """The whole of stdout as JSON, or else its last line that parses."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        for line in reversed(stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON")


def num(value: Any, digits: int = 0) -> str:
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return "—" if value is None else str(value)


def rows_for(run: BenchRun) -> list[PerfRow]:
    """Turn one benchmark's JSON into table rows; unknown shapes are shown raw rather than dropped."""
    data = run.data
    try:
        if run.name == "load":
            return load_rows(data)
        if run.name == "audit_bench":
            return audit_rows(data)
        if run.name == "costs":
            return cost_rows(data)
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            return paired_rows(run.name, data)
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            return ledger_rows(data)
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return listed_rows(run.name, data)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return [PerfRow(run.name, "—", "—", "—", "—", "—", "—", "—", f"unreadable JSON shape ({exc!r})")]
    raw = json.dumps(data)[:300]
    return [PerfRow(run.name, "—", "—", "—", "—", "—", "—", "—", f"unrecognised JSON: `{raw}`")]


def paired_rows(name: str, data: dict[str, Any]) -> list[PerfRow]:
    rows = []
    for row in data["rows"]:
        goal = row.get("goal", data.get("goal_ratio"))
        ours, base = row["ours"], row["baseline"]
        ratio = row.get("ratio")
        verdict = "" if goal is None or ratio is None else (" ✓" if ratio >= goal else " ✗")
        rows.append(
            PerfRow(
                name,
                str(row.get("path", ours.get("path", "—"))),
                str(ours.get("subject", "—")),
                f"{num(ours.get('rate'))} calls/s",
                str(base.get("subject", "—")),
                f"{num(base.get('rate'))} calls/s",
                f"{num(ratio, 2)}{verdict}",
                f"{num(ours.get('p50_ms'), 2)} / {num(ours.get('p99_ms'), 2)}",
                row.get("note") or (f"goal ≥ {goal}" if goal is not None else ""),
            )
        )
    return rows


def ledger_rows(data: dict[str, Any]) -> list[PerfRow]:
    """Ledger runs beside the raw-sqlite3 run doing the same kind of operation with as many workers."""
    runs = data["runs"]
    goal = data.get("goal_ratio")

    def kind(run: dict[str, Any]) -> str:
        return str(run.get("subject", "")).split()[-1]

    raw = {(r.get("backend"), r.get("workers"), kind(r)): r for r in runs if "raw" in str(r.get("subject", ""))}
    rows = []
    for r in runs:
        if "raw" in str(r.get("subject", "")):
            continue
        base = raw.get((r.get("backend"), r.get("workers"), kind(r)))
        ratio = r.get("per_second", 0) / base["per_second"] if base and base.get("per_second") else None
        judged = kind(r) == "transfers" and base is not None and goal is not None
        rows.append(
            PerfRow(
                "ledger_bench",
                f"{r.get('backend')}, {r.get('workers')} worker{'s' if r.get('workers') != 1 else ''}",
                str(r.get("subject")),
                f"{num(r.get('per_second'))} ops/s",
                str(base.get("subject")) if base else "— (no baseline at this size)",
                f"{num(base.get('per_second'))} ops/s" if base else "—",
                (num(ratio, 2) + ((" ✓" if ratio >= goal else " ✗") if judged and goal else "")) if ratio else "—",
                "—",
                ("books sound" if r.get("books_sound", True) else "BOOKS BROKEN")
                + (f"; goal ≥ {goal}" if judged else ""),
            )
        )
    return rows


def audit_rows(data: dict[str, Any]) -> list[PerfRow]:
    """The audit designs' write rates (signed records unchained + sequencer, against the old shared head row)."""
    old, new = (next(f for f in data["figures"] if f["design"] == design) for design in ("head row", "sequencer"))
    findings = data["findings"]
    return [
        PerfRow(
            "audit_bench",
            f"PostgreSQL, {data['writers']} writers, 3 records per transaction",
            "sequencer: signed rows, chained after commit",
            f"{num(new['per_second'])} tx/s",
            "one shared head row (the first design)",
            f"{num(old['per_second'])} tx/s",
            num(data["ratio"], 2),
            "—",
            f"{data['unchained_when_writers_stopped']} records unchained when the writers stopped; afterwards "
            f"{data['records_chained']} chained, {data['pending_after']} pending, {len(findings)} findings"
            + (f" ({findings[0]})" if findings else "")
            + f"; Ed25519 per record: sign {data['sign_us']} µs, verify {data['verify_us']} µs",
        )
    ]


COST_PAIRS = (
    ("gated transfer_funds", "required work: policy, approval, audit"),
    ("required work: policy, approval, audit", f"{FLOOR}question + outcome commits"),
    ("get_account_balance", "required work: entitlements and policy"),
    ("required work: entitlements and policy", f"{FLOOR}one read, balance schema"),
)
"""`bench.costs` subjects shown against one another: bankgate over the required work, that over the floor."""


def cost_rows(data: dict[str, Any]) -> list[PerfRow]:
    """Work per call (counted, not timed): the ratio of Python calls, the other counters beside it."""

    def work(cost: dict[str, Any]) -> str:
        return (
            f"{num(cost['python_calls'])} Python calls, {num(cost['statements'], 1)} statements, "
            f"{num(cost['durable_commits'], 1)} durable commits, {num(cost['pages_written'], 1)} pages"
        )

    costs = {(c["path"], c["subject"]): c for c in data["costs"]}
    rows = []
    for path in dict.fromkeys(c["path"] for c in data["costs"]):
        for subject, baseline in COST_PAIRS:
            ours, base = costs[path, subject], costs[path, baseline]
            pages = f"pages ×{num(ours['pages_written'] / base['pages_written'], 1)}" if base["pages_written"] else ""
            statements = f"statements ×{num(ours['statements'] / base['statements'], 1)}"
            rows.append(
                PerfRow(
                    "costs", f"{path} (per call, counted)", subject, work(ours), baseline, work(base),
                    num(ours["python_calls"] / base["python_calls"], 2), "—",
                    "; ".join(filter(None, ["ratio of Python calls", statements, pages])),
                )
            )  # fmt: skip
        sequencer = next(c for (p, s), c in costs.items() if p == path and s.startswith("+ audit sequencer"))
        rows.append(
            PerfRow(
                "costs", f"{path} (per call, counted)", sequencer["subject"], work(sequencer), "—", "—", "—", "—",
                "bankgate's background chaining, per gated transfer, in one batch",
            )
        )  # fmt: skip
    return rows


def listed_rows(name: str, data: list[dict[str, Any]]) -> list[PerfRow]:
    rows = []
    for r in data:
        p50 = r.get("p50_ms")
        tail_key = next((k for k in ("p99_ms", "p90_ms") if k in r), None)
        latency = f"{num(p50, 2)} / {num(r.get(tail_key), 2)} ({tail_key[:3]})" if tail_key else num(p50, 2)
        extras = {k: v for k, v in r.items() if k.endswith("_ms") and k not in ("p50_ms", tail_key) and v is not None}
        rows.append(
            PerfRow(
                name,
                str(r.get("path", "—")),
                str(r.get("subject", "—")),
                f"{num(r.get('rate'))} calls/s" if "rate" in r else "—",
                "baselines are rows of this list",
                "—",
                "—",
                latency,
                ", ".join(f"{k} {num(v, 1)}" for k, v in extras.items()),
            )
        )
    return rows


LOAD_GOALS = {("postgresql", 32): 0.6, ("sqlite", 32): 0.9}
"""#16: bankgate's mixed-call rate over the bare SDK server's on the same mix, by (backend, clients)."""

APPROVED_P50_GOAL_MS = 150
"""#16: an approved transfer's p50 at 32 clients on PostgreSQL."""


LOAD_BARE, LOAD_FLOOR = "bare SDK server, same mix", f"{FLOOR}durable work of the mix only"
LOAD_REQUIRED = f"{REQUIRED}policy, bound approvals, signed audit"
LOAD_AGAINST_FLOOR_NOTE = "no goal: what bankgate adds to the work any gate keeping its records must do"


def load_rows(data: dict[str, Any]) -> list[PerfRow]:
    """Five rows a phase: bankgate against the bare server (judged), against the floor (for reading), the
    floor against the bare server (the most any gate keeping its records reaches), the required work
    against the bare server (the most any gate keeping bankgate's promises reaches) and bankgate against
    the required work (what its own code costs)."""
    rows = []
    for row in data["rows"]:
        ours, base, floor = row["ours"], row["baseline"], row.get("floor")
        backend, clients = data.get("backend"), row["clients"]
        alternating = f" in {data['rounds']} alternating rounds" if data.get("rounds", 1) > 1 else ""
        configuration = f"{backend}, HTTP, {clients} clients, {data.get('seconds_per_phase')} s{alternating}"
        kinds = ours.get("per_kind", {})
        goal = None if backend is None else LOAD_GOALS.get((backend, clients))
        ratio = row.get("ratio")
        verdict = "" if goal is None or ratio is None else (" ✓" if ratio >= goal else " ✗")
        goals = [f"goal ≥ {goal}"] if goal is not None else []
        approved = kinds.get("transfer-approved", {}).get("p50_ms")
        if backend == "postgresql" and clients == 32 and approved is not None:
            met = "✓" if approved <= APPROVED_P50_GOAL_MS else "✗"
            goals.append(f"approved p50 {approved:.0f} ms, goal ≤ {APPROVED_P50_GOAL_MS} {met}")
        notes = [*goals, f"bare server p50 ms: {_p50s(base)}" if base.get("per_kind") else "", _phase_facts(ours)]
        subject, judged = "bankgate, mixed calls", f"{num(ratio, 2)}{verdict}"
        rows.append(_load_row(configuration, subject, ours, LOAD_BARE, base, judged, notes))
        if floor is None:
            continue
        against_floor = [LOAD_AGAINST_FLOOR_NOTE, f"floor p50 ms: {_p50s(floor)}" if floor.get("per_kind") else ""]
        rows.append(_load_row(configuration, subject, ours, LOAD_FLOOR, floor, num(row.get("ratio_to_floor"), 2),
                              against_floor))  # fmt: skip
        rows.append(_load_row(configuration, LOAD_FLOOR, floor, LOAD_BARE, base, num(row.get("floor_ratio"), 2),
                              [FLOOR_NOTE, _phase_facts(floor)]))  # fmt: skip
        bound = row.get("required")
        if bound is None:
            continue
        rows.append(_load_row(configuration, LOAD_REQUIRED, bound, LOAD_BARE, base, num(row.get("required_ratio"), 2),
                              [REQUIRED_NOTE, _phase_facts(bound)]))  # fmt: skip
        rows.append(_load_row(configuration, subject, ours, LOAD_REQUIRED, bound,
                              num(row.get("ratio_to_required"), 2), [OVER_REQUIRED_NOTE]))  # fmt: skip
    return [*rows, _books_row(data)]


def _load_row(
    configuration: str, subject: str, figures: dict[str, Any], baseline: str, base: dict[str, Any], ratio: str,
    notes: list[str],
) -> PerfRow:  # fmt: skip
    named = {**figures.get("per_kind", {}), **figures.get("per_revision", {})}
    latency = "; ".join(f"{k} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for k, v in named.items())
    return PerfRow(
        "load", configuration, subject, f"{num(figures.get('calls_per_s'))} calls/s", baseline,
        f"{num(base.get('calls_per_s'))} calls/s", ratio, latency, "; ".join(part for part in notes if part),
    )  # fmt: skip


def _p50s(figures: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v['p50_ms']:.0f}" for k, v in figures.get("per_kind", {}).items())


def _phase_facts(figures: dict[str, Any]) -> str:
    errors = sum(figures.get("errors", {}).values())
    loop = figures.get("loop_cpu_ms_per_call")
    split = f" (event loop {loop})" if loop is not None else ""
    switches = figures.get("switches_per_call")
    handoffs = f", {switches} thread switches a call" if switches is not None else ""
    return (
        f"{figures.get('calls')} calls, {errors} errors; server RSS {figures.get('rss_start_mib')} → "
        f"{figures.get('rss_end_mib')} MiB; server CPU {figures.get('server_cpu_s')} s, "
        f"{figures.get('server_cpu_ms_per_call')} ms a call{split}{handoffs}"
    )


def _books_row(data: dict[str, Any]) -> PerfRow:
    books = data.get("books", {})
    return PerfRow(
        "load",
        f"{data.get('backend')}, after all phases",
        "the books",
        "—",
        "—",
        "—",
        "—",
        "—",
        f"{books.get('acknowledged_transfers')} acknowledged transfers: {books.get('lost')} lost, "
        f"{books.get('duplicated')} duplicated; invariants "
        f"{'hold' if not books.get('invariant_violations') else 'VIOLATED'}; "
        f"audit: {books.get('audit_verify_says')}",
    )


def run_drills(env: dict[str, str], workdir: Path) -> tuple[dict[str, DrillFile], list[dict[str, Any]], str, float]:
    report, junit = workdir / "drills.jsonl", workdir / "drills.xml"
    command = [sys.executable, "-m", "pytest", "-q", "tests/drills", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=ROOT, env={**env, "BANKGATE_DRILL_REPORT": str(report)}, capture_output=True, text=True,
        timeout=BENCH_TIMEOUT,
    )  # fmt: skip
    seconds = time.monotonic() - started
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    files: dict[str, DrillFile] = {}
    if junit.exists():
        for case in ElementTree.parse(junit).getroot().iter("testcase"):
            name = (case.get("classname") or "").rsplit(".", 1)[-1] + ".py"
            drill = files.setdefault(name, DrillFile(name))
            drill.seconds += float(case.get("time") or 0)
            skipped = case.find("skipped")
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            if failure is not None:
                drill.failed += 1
                drill.failures.append(f"{case.get('name')}: {(failure.get('message') or '')[:200]}")
            elif skipped is not None and (skipped.get("type") or "").endswith("xfail"):
                drill.xfailed += 1
                reason = re.sub(r"^reason: ", "", skipped.get("message") or "")
                drill.xfail_reasons.add(f"{name.removesuffix('.py')}::{case.get('name')} — {reason}")
            elif skipped is not None:
                drill.skipped += 1
                drill.skip_reasons.add(re.sub(r"^.*?: ", "", skipped.get("message") or "")[:120])
            else:
                drill.passed += 1
    facts = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    return files, facts, summary, seconds


def drill_facts(name: str, facts: list[dict[str, Any]]) -> str:
    prefix = {
        "test_replicas.py": "replicas",
        "test_crash_recovery.py": "crash-recovery",
        "test_database_outage.py": "database-outage",
        "test_restart_between_rounds.py": "restart-between-rounds",
        "test_fuzz.py": "fuzz",
        "test_forgery.py": "forgery",
        "test_http_abuse.py": "http-abuse",
        "test_explore.py": "explore",
    }.get(name)
    lines = []
    for fact in facts:
        if prefix and str(fact.get("drill", "")).startswith(prefix):
            shown = {k: v for k, v in fact.items() if k != "drill"}
            lines.append(", ".join(f"{k.replace('_', ' ')} {format_fact(v)}" for k, v in shown.items()))
    return "<br>".join(lines) or "—"


def format_fact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" (with uncommitted changes in the tree)" if dirty.stdout.strip() else "")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


CHART_TITLES = {
    RATIOS: "Ratio to the same-run baseline per benchmark, with its goal",
    HOST_TIME: "Where a host turn's time goes",
    LOAD: "Calls/s against client count, SQLite and PostgreSQL, beside the bare SDK server",
}
_PERFORMANCE = "## Performance\n\n"
_TABLE_HEAD = "| benchmark | configuration |"


def table_rows(page: str) -> list[PerfRow]:
    """The performance table of a page :func:`render` wrote, back as rows (for ``--charts-only``)."""
    rows = []
    for line in page[page.index(_TABLE_HEAD) :].split("\n\n", 1)[0].splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 9 and line.startswith("| ") and not line.startswith((_TABLE_HEAD, "|---")):
            rows.append(PerfRow(*cells))
    return rows


def with_charts(page: str, charts: list[Path], page_dir: Path) -> str:
    """``page`` with the images of ``charts`` between the performance heading and its table."""
    head, rest = page.split(_PERFORMANCE, 1)
    table = rest[rest.index(_TABLE_HEAD) :]
    images = "".join(f"![{CHART_TITLES[c.name]}]({c.relative_to(page_dir).as_posix()})\n\n" for c in charts)
    return head + _PERFORMANCE + images + table


def render(
    benches: list[BenchRun],
    missing: list[str],
    drills: tuple[dict[str, DrillFile], list[dict[str, Any]], str, float] | None,
    postgres: bool,
    quick: bool,
    invocation: str,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pg_env = f"{PG_ENV}=postgresql://postgres@127.0.0.1:5432/test "
    out = [
        "# Results",
        "",
        f"Generated by `{invocation}` on {now}, commit {git_state()}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}."
        + (" Reduced sizes (`--quick`)." if quick else ""),
        "Every figure below comes from that run: do not edit it by hand, rerun the command. Ratios compare with "
        "a baseline measured in the same run on the same machine (runs vary by about ±25%; the baseline "
        "moves with them). Clients and servers share the machine's cores.",
        "",
        "## Performance",
        "",
        "| benchmark | configuration | subject | rate | same-run baseline | baseline rate | ratio | p50 / p99 ms "
        "| notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in benches:
        if run.data is not None:
            for row in rows_for(run):
                out.append(
                    "| "
                    + " | ".join(
                        cell(v)
                        for v in (
                            row.benchmark, row.configuration, row.subject, row.rate, row.baseline, row.baseline_rate,
                            row.ratio, row.latency, row.notes,
                        )
                    )
                    + " |"
                )  # fmt: skip
        if run.problem:
            out.append(f"| {run.name} | — | — | — | — | — | — | — | **{cell(run.problem)}** |")
    for name in missing:
        out.append(f"| {name} | — | — | — | — | — | — | — | not present in this checkout (bench/{name}.py) |")
    out += ["", "Reproduce (each prints a table without `--json`):", ""]
    out += [f"- `{run.command}` ({run.seconds:.0f} s)" for run in benches]
    out += [
        "",
        "In `load`, the latency column lists p50/p99 ms per kind of call (a transfer's includes its approval "
        "round trip), then per protocol revision of the clients (a quarter speak 2025-11-25); RSS is the server "
        "process's resident set (`/proc/<pid>/status`) at the start and end of the phase.",
    ]
    out += ["", "## Drills", ""]
    if drills is None:
        out.append("Not run (`--no-drills`).")
    else:
        files, facts, summary, seconds = drills
        out += [
            f"`pytest tests/drills` at `BANKGATE_DRILL_SCALE={os.environ.get('BANKGATE_DRILL_SCALE', '1')}`: "
            f"{summary} ({seconds:.0f} s wall)"
            + ("" if postgres else f"; PostgreSQL drills skipped: set `{PG_ENV}` to run them")
            + ".",
            "",
            "| drill | what it does | what it saw | result | reproduce |",
            "|---|---|---|---|---|",
        ]
        for name, what in DRILLS.items():
            drill = files.get(name)
            if drill is None:
                result = "not run"
            else:
                parts = [f"{drill.passed} passed"]
                if drill.failed:
                    parts.append(f"**{drill.failed} FAILED**")
                if drill.xfailed:
                    parts.append(f"{drill.xfailed} known bug (xfail)")
                if drill.skipped:
                    parts.append(f"{drill.skipped} skipped ({'; '.join(sorted(drill.skip_reasons))})")
                result = ", ".join(parts) + f"; {drill.seconds:.0f} s"
            needs_pg = name in ("test_replicas.py", "test_database_outage.py")
            command = f"`{pg_env if needs_pg or postgres else ''}python -m pytest -q tests/drills/{name}`"
            out.append(f"| {name.removesuffix('.py')} | {cell(what)} | {cell(drill_facts(name, facts))} "
                       f"| {cell(result)} | {command} |")  # fmt: skip
        failures = [f for d in files.values() for f in d.failures]
        known = sorted(r for d in files.values() for r in d.xfail_reasons)
        if failures:
            out += ["", "Failures in this run:", ""] + [f"- {cell(f)}" for f in failures]
        if known:
            out += ["", "Known bugs, each kept as a strict xfail drill until fixed:", ""]
            out += [f"- {cell(k)}" for k in known]
        out += ["", "Found by these drills and fixed since (the drills stay as regression tests):", ""]
        out += [f"- {item}" for item in FIXED]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=os.environ.get(PG_ENV), help=f"PostgreSQL to use (or ${PG_ENV})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes everywhere (a smoke run)")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmarks not to run")
    parser.add_argument("--no-drills", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "RESULTS.md")
    parser.add_argument(
        "--charts-only", action="store_true", help="redraw the charts from the table already in --output; run nothing"
    )
    args = parser.parse_args()
    charts_dir = args.output.parent / "charts"
    if args.charts_only:
        page = args.output.read_text(encoding="utf-8")
        charts = render_charts(table_rows(page), charts_dir)
        args.output.write_text(with_charts(page, charts, args.output.parent), encoding="utf-8")
        progress(f"redrew {len(charts)} charts in {charts_dir} from the table in {args.output}")
        return

    env = dict(os.environ)
    env.pop(PG_ENV, None)
    if args.postgres_url:
        env[PG_ENV] = args.postgres_url
    present = discover()
    missing = [name for name in EXPECTED if name not in present]
    benches = []
    for name in present:
        if name in args.skip or (name in POSTGRES_ONLY and not args.postgres_url):
            continue
        extra = QUICK_ARGS.get(name, []) if args.quick else []
        progress(f"running bench.{name} ...")
        if name in POSTGRES_ONLY:
            benches.append(run_bench(name, [*extra, "--postgres-url", args.postgres_url], env))
            continue
        benches.append(run_bench(name, extra, env))
        if name == "load" and args.postgres_url:
            benches.append(run_bench(name, [*extra, "--postgres-url", args.postgres_url], env))
    drills = None
    if not args.no_drills:
        progress("running the drills (pytest tests/drills) ...")
        with tempfile.TemporaryDirectory() as workdir:
            drills = run_drills(env, Path(workdir))
        progress(f"drills: {drills[2]}")
    invocation = "python -m bench.results" + (" --postgres-url URL" if args.postgres_url else "")
    invocation += " --quick" if args.quick else ""
    page = render(benches, missing, drills, bool(args.postgres_url), args.quick, invocation)
    charts = render_charts([row for run in benches if run.data is not None for row in rows_for(run)], charts_dir)
    args.output.write_text(with_charts(page, charts, args.output.parent), encoding="utf-8")
    progress(f"wrote {args.output}")


if __name__ == "__main__":
    main()
