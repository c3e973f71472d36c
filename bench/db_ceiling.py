"""The database's own ceiling: bankgate's gated-transfer transactions replayed straight into PostgreSQL.

    python -m bench.db_ceiling --postgres-url URL [--clients 32] [--seconds 8] [--rounds 4]

The shapes are captured from the server by `bench.shapes` (the same statements, in the same
transactions, with the values one real call sent), then replayed by many threads, each on its
own psycopg connection, with no MCP, no policy and no Python beyond the driver. Values that
must be unique per call (approval reference, idempotency key, transaction and audit ids) are
made fresh for every replay, the two accounts are drawn from a funded pool, and the idempotency
key's advisory turn follows the key. Run twice in the same run, with and without the audit
statements, in alternating rounds: the ratio is what the audit design costs the database.
"""

import argparse
import json
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.load import database
from bench.rounds import alternating
from bench.shapes import AUTOCOMMIT, Sent, Shape, capture_on

ACCOUNTS = 200
GOAL = 0.8
"""Issue 16: with audit / without audit, gated transfers per second at 32 clients."""
ROUNDS = 4
"""Alternating slices per variant: on open connections a slice costs nothing extra, and more of them average
out this benchmark's noise (32 threads and the database sharing 2 cores)."""
FRESH = ("ref", "binding", "pending_binding", "asked_digest", "key", "id", "tx", "debit_entry", "credit_entry", "rid")
"""Parameters whose captured values a replay must not repeat (unique columns, or names of turns); a
multi-row INSERT numbers them (`rid_0`, `rid_1`, …)."""
_ENDS = ("BEGIN", "COMMIT", "ROLLBACK")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Replay:
    """One captured statement in psycopg's parameter style."""

    sql: str
    params: Mapping[str, Any]


def driver_style(sent: Sent) -> Replay:
    """`:name` (a `Statement`'s portable text) as `%(name)s`; SQLAlchemy-sent SQL already is."""
    params = dict(sent.params) if isinstance(sent.params, Mapping) else {}
    sql = sent.sql.replace("%", "%%") if ":" in sent.sql else sent.sql
    return Replay(_NAMED.sub(lambda m: f"%({m.group(1)})s" if m.group(1) in params else m.group(0), sql), params)


def replays(shape: Shape, *, audit: bool) -> list[tuple[bool, list[Replay]]]:
    """The shape's transactions as replayable statements, each with whether it runs in a transaction (a
    PostgreSQL read does not); without `audit`, its audit statements left out."""
    return [
        (
            t.end != AUTOCOMMIT,
            [driver_style(s) for s in t.statements if s.verb not in _ENDS and (audit or not s.audit)],
        )
        for t in shape.transactions
    ]


def fresh_values(shape: Shape) -> set[str]:
    return {
        str(value)
        for t in shape.transactions
        for s in t.statements
        if isinstance(s.params, Mapping)
        for name, value in s.params.items()
        if re.sub(r"_\d+$", "", name) in FRESH and isinstance(value, str)
    }


def accounts_of(shape: Shape) -> tuple[str, str]:
    for t in shape.transactions:
        for s in t.statements:
            if isinstance(s.params, Mapping) and "debit" in s.params:
                return str(s.params["debit"]), str(s.params["credit"])
    raise ValueError("the shape moves no money")


class Replayer:
    def __init__(self, shape: Shape, *, audit: bool, pipelined: bool = False) -> None:
        self.pipelined = pipelined
        self.transactions = replays(shape, audit=audit)
        self.fresh = fresh_values(shape)
        self.payer, self.payee = accounts_of(shape)
        self.done = 0
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()

    def _params(self, params: Mapping[str, Any], suffix: str, pair: tuple[str, str]) -> dict[str, Any]:
        swap = {self.payer: pair[0], self.payee: pair[1]}
        out: dict[str, Any] = {}
        for name, value in params.items():
            if isinstance(value, str) and value in self.fresh:
                value = value + suffix
            elif isinstance(value, str) and value.startswith(tuple(f"{a}:" for a in swap)):
                value = swap[value.split(":")[0]] + value[len(value.split(":")[0]) :]
            elif isinstance(value, str) and value in swap:
                value = swap[value]
            out[name] = value
        if "space" in out and "name" in out:  # a turn: on the fresh key, not the captured one
            out["name"] = suffix
        if {"first", "second"} <= out.keys():
            out["first"], out["second"] = sorted(pair)
        return out

    def client(self, number: int, conn: psycopg.Connection[Any], accounts: Sequence[str], deadline: float) -> None:
        """Replay on `conn` (in autocommit: `conn.transaction()` BEGINs and COMMITs) until `deadline`."""
        rng = random.Random(number)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            suffix = f"-{number}-{n}-{uuid.uuid4().hex[:6]}"
            pair = tuple(rng.sample(list(accounts), 2))
            try:
                for transacted, statements in self.transactions:
                    pipeline = conn.pipeline() if self.pipelined else nullcontext()
                    with pipeline, conn.transaction() if transacted else nullcontext():
                        for replay in statements:
                            conn.execute(replay.sql, self._params(replay.params, suffix, (pair[0], pair[1])))
            except psycopg.Error as exc:
                with self._lock:
                    self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                continue
            with self._lock:
                self.done += 1


def fund(url: str, template: tuple[str, str], count: int) -> list[str]:
    """`count` accounts copied from the captured payer, each with plenty of money."""
    ids = [f"ACC-{9_000_000 + n}" for n in range(count)]
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT owner, currency, created_at FROM accounts WHERE id = %s", (template[0],)).fetchone()
        assert row is not None, "the captured payer exists"
        for account in ids:
            conn.execute(
                "INSERT INTO accounts (id, kind, owner, currency, status, balance_minor, created_at)"
                " VALUES (%s, 'customer', %s, %s, 'open', 1000000000, %s)",
                (account, *row),
            )
    return ids


def drive(
    replayer: Replayer, connections: Sequence[psycopg.Connection[Any]], accounts: Sequence[str], seconds: float
) -> float:
    """A thread per connection replaying for `seconds`; the time they took."""
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    threads = [
        threading.Thread(target=replayer.client, args=(number, conn, accounts, deadline))
        for number, conn in enumerate(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def run(url: str, clients: int, seconds: float, *, pipelined: bool = False, rounds: int = ROUNDS) -> dict[str, Any]:
    """Both variants in `rounds` alternating slices (with, without, without, with, ...) on the same open
    connections, so a drift in the machine's speed, or the tables growing, falls on both alike."""
    with tempfile.TemporaryDirectory() as work, database(url, Path(work)) as schema_url, ExitStack() as stack:
        shape = capture_on(schema_url, Path(work)).gated_transfer
        driver_url = schema_url.replace("postgresql+psycopg://", "postgresql://", 1)
        accounts = fund(driver_url, accounts_of(shape), ACCOUNTS)
        connections = [stack.enter_context(psycopg.connect(driver_url, autocommit=True)) for _ in range(clients)]
        replayers = {audit: Replayer(shape, audit=audit, pipelined=pipelined) for audit in (True, False)}
        elapsed = dict.fromkeys(replayers, 0.0)
        for _, audit in alternating((True, False), rounds):
            elapsed[audit] += drive(replayers[audit], connections, accounts, seconds / rounds)
        rows: dict[str, Any] = {
            "with_audit" if audit else "without_audit": {
                "transfers_per_s": round(replayer.done / elapsed[audit], 1),
                "transfers": replayer.done,
                "errors": replayer.errors,
                "statements": sum(len(statements) for _, statements in replayer.transactions),
            }
            for audit, replayer in replayers.items()
        }
    ratio = rows["with_audit"]["transfers_per_s"] / max(rows["without_audit"]["transfers_per_s"], 1e-9)
    return {
        "benchmark": "db_ceiling",
        "goal_ratio": GOAL,
        "rows": [
            {
                "path": f"PostgreSQL, {clients} clients, {seconds} s"
                + (f" in {rounds} alternating rounds" if rounds > 1 else "")
                + (", pipelined" if pipelined else ""),
                "ours": {"subject": "gated-transfer shape, with audit", "rate": rows["with_audit"]["transfers_per_s"]},
                "baseline": {"subject": "same, without audit", "rate": rows["without_audit"]["transfers_per_s"]},
                "ratio": round(ratio, 3),
                "note": f"goal ≥ {GOAL}; statements per transfer {rows['with_audit']['statements']} with audit, "
                f"{rows['without_audit']['statements']} without; errors {rows['with_audit']['errors']} / "
                f"{rows['without_audit']['errors']}",
            }
        ],
        **rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="per variant, over all rounds")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating slices each variant is driven in")
    parser.add_argument("--pipeline", action="store_true", help="send each transaction in one round trip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    report = run(args.postgres_url, args.clients, args.seconds, pipelined=args.pipeline, rounds=args.rounds)
    if args.json:
        print(json.dumps(report))
        return
    for name in ("with_audit", "without_audit"):
        row = report[name]
        figures = f"{row['transfers_per_s']:8.1f} gated transfers/s"
        print(f"{name:14} {figures}  ({row['statements']} statements, errors {row['errors']})")
    print(f"ratio (with / without audit): {report['rows'][0]['ratio']:.2f}  (goal >= {GOAL})")


if __name__ == "__main__":
    main()
