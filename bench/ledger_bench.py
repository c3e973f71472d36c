"""Ledger throughput beside a raw-sqlite3 baseline measured in the same run.

    python -m bench.ledger_bench [--transfers N] [--postgres-url URL] [--json]

Runs one-transaction transfers (``Ledger.transfer_in``) on SQLite (1 and 8 worker threads) and, when a PostgreSQL URL is
given (or ``BANKGATE_TEST_POSTGRES_URL`` is set), on PostgreSQL (1 and 16 workers, in a
throwaway schema). The baseline is plain ``sqlite3`` doing the same row writes per transfer
(two balance updates, one transaction row, two entries) on the same schema with the same
durability (WAL, ``synchronous=FULL``), but none of the ledger's reads, checks or retries.
The single-worker ledger and the baseline run in alternating rounds so that load from
other processes hits both alike; the goal is ledger/baseline >= 0.5 for transfers. The read
path (``Ledger.balance``: pool checkout, snapshot transaction, one indexed SELECT, model) is
timed beside a bare sqlite3 SELECT the same way, for information. Every run ends
with ``check_invariants`` and a check that customer money was conserved.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.progress import progress
from bench.servers import bench_audit
from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from mcp_server.storage.database import Database
from mcp_server.timestamps import now_text

ACCOUNTS = 200
OPENING_BALANCE = "100000.00"
ROUNDS = 4
GOAL_RATIO = 0.5


@dataclass(frozen=True)
class Run:
    backend: str
    subject: str
    workers: int
    operations: int
    seconds: float
    books_sound: bool

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds


class LedgerSubject:
    """A fresh ledger with funded accounts, each transfer `Ledger.transfer_in` in a transaction of its own."""

    def __init__(self, url: str, workers: int, workdir: Path) -> None:
        self.workers = workers
        self.db = Database.open(url, pool_size=workers)
        self.ledger = Ledger(self.db, audit=bench_audit(workdir))
        self.ids = open_accounts(self.ledger)
        self.total = money_held(self.db)

    def transfers(self, count: int, seed: int) -> float:
        per_worker = count // self.workers

        def work(rng: random.Random) -> None:
            for _ in range(per_worker):
                source, target = rng.sample(self.ids, 2)
                try:
                    self.transfer(source, target, random_amount_minor(rng))
                except LedgerError as error:  # an emptied account is a legitimate refusal
                    if error.code != "insufficient_funds":
                        raise

        return timed_threads(self.workers, seed, work)

    def transfer(self, source: str, target: str, amount_minor: int) -> None:
        self.db.run(lambda conn: self.ledger.transfer_in(conn, source, target, amount_minor))

    def reads(self, count: int, seed: int) -> float:
        def work(rng: random.Random) -> None:
            for _ in range(count):
                self.ledger.balance(rng.choice(self.ids))

        return timed_threads(1, seed, work)

    def finish(self) -> bool:
        try:
            return self.ledger.check_invariants() == [] and money_held(self.db) == self.total
        finally:
            self.db.close()


class RawSqliteSubject:
    """The same schema and durability, written through bare sqlite3 with no checks."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        db = Database.open(self.url)
        self.ids = open_accounts(Ledger(db, audit=bench_audit(path.parent)))
        self.total = money_held(db)
        db.close()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def transfers(self, count: int, seed: int) -> float:
        conn = self.conn

        def work(rng: random.Random) -> None:
            for _ in range(count):
                source, target = rng.sample(self.ids, 2)
                amount = random_amount_minor(rng)
                tx = "TX-" + secrets.token_hex(10)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE accounts SET balance_minor = balance_minor - ? WHERE id = ?", (amount, source))
                conn.execute("UPDATE accounts SET balance_minor = balance_minor + ? WHERE id = ?", (amount, target))
                conn.execute(
                    "INSERT INTO transactions (id, kind, memo, created_at) VALUES (?, 'transfer', NULL, ?)",
                    (tx, now_text()),
                )
                conn.execute(
                    "INSERT INTO entries (id, transaction_id, account_id, amount_minor)"
                    " VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
                    (f"{tx}:1", tx, source, -amount, f"{tx}:2", tx, target, amount),
                )
                conn.execute("COMMIT")

        return timed_threads(1, seed, work)

    def reads(self, count: int, seed: int) -> float:
        conn = self.conn

        def work(rng: random.Random) -> None:
            for _ in range(count):
                conn.execute(
                    "SELECT id, owner, currency, status, balance_minor FROM accounts WHERE id = ?",
                    (rng.choice(self.ids),),
                ).fetchone()

        return timed_threads(1, seed, work)

    def finish(self) -> bool:
        self.conn.close()
        db = Database.open(self.url)
        try:
            return Ledger(db).check_invariants() == [] and money_held(db) == self.total
        finally:
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=2000, help="transfers (and reads) per configuration")
    parser.add_argument("--postgres-url", default=os.environ.get("BANKGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--dir", type=Path, default=None, help="where SQLite files go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    count: int = args.transfers

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        subjects: dict[str, LedgerSubject | RawSqliteSubject] = {
            "ledger": LedgerSubject(f"sqlite:///{Path(folder) / 'ledger-1.db'}", 1, Path(folder)),
            "raw sqlite3": RawSqliteSubject(Path(folder) / "baseline.db"),
        }
        seconds: dict[tuple[str, str], float] = {}
        for kind in ("transfers", "reads"):
            progress(f"ledger_bench: sqlite, 1 worker, {kind}: ledger and raw sqlite3, {ROUNDS} rounds")
            for round_number in range(ROUNDS):  # alternate, so background load hits both alike
                for who, subject in subjects.items():
                    measure = subject.transfers if kind == "transfers" else subject.reads
                    seconds[who, kind] = seconds.get((who, kind), 0.0) + measure(count // ROUNDS, round_number)
        books = {name: subject.finish() for name, subject in subjects.items()}
        runs += [
            Run("sqlite", f"{who} {kind}", 1, count // ROUNDS * ROUNDS, spent, books[who])
            for (who, kind), spent in seconds.items()
        ]
        progress("ledger_bench: sqlite, 8 workers, transfers")
        runs.append(measure_transfers("sqlite", f"sqlite:///{Path(folder) / 'ledger-8.db'}", 8, count, Path(folder)))
        for workers in (1, 16) if args.postgres_url else ():
            progress(f"ledger_bench: postgresql, {workers} worker{'s' if workers > 1 else ''}, transfers")
            with postgres_schema(args.postgres_url) as url:
                runs.append(measure_transfers("postgresql", url, workers, count, Path(folder)))

    ratios = {kind: rate(runs, f"ledger {kind}") / rate(runs, f"raw sqlite3 {kind}") for kind in ("transfers", "reads")}
    if args.json:
        print(json.dumps(as_json(runs, ratios, count)))
    else:
        print_table(runs, ratios)
    if not all(run.books_sound for run in runs):
        sys.exit("invariant check failed")


def measure_transfers(backend: str, url: str, workers: int, count: int, workdir: Path) -> Run:
    subject = LedgerSubject(url, workers, workdir)
    seconds = subject.transfers(count, seed=0)
    done = count // workers * workers
    return Run(backend, "ledger transfers", workers, done, seconds, subject.finish())


def rate(runs: list[Run], subject: str) -> float:
    return next(r.per_second for r in runs if r.backend == "sqlite" and r.subject == subject and r.workers == 1)


def random_amount_minor(rng: random.Random) -> int:
    return rng.randint(1, 5000_00)


def open_accounts(ledger: Ledger) -> list[str]:
    ids = [ledger.create_account(f"Bench {n}").id for n in range(ACCOUNTS)]
    for account in ids:
        ledger.deposit(account, OPENING_BALANCE)
    return ids


def money_held(db: Database) -> int:
    query = text("SELECT SUM(balance_minor) FROM accounts WHERE kind = 'customer'")
    return int(db.read(lambda conn: conn.execute(query).scalar_one()))


def timed_threads(workers: int, seed: int, work: Callable[[random.Random], None]) -> float:
    """Run ``work`` on ``workers`` threads released together; wall-clock seconds until all finish."""
    start = threading.Barrier(workers + 1)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        start.wait()
        try:
            work(random.Random(seed * 1000 + number))
        except BaseException as exc:  # re-raised in the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - began


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    plain = base_url.replace("postgresql+psycopg://", "postgresql://", 1)
    schema = f"bankgate_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(plain).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def as_json(runs: list[Run], ratios: dict[str, float], count: int) -> dict[str, object]:
    return {
        "benchmark": "ledger",
        "operations_per_configuration": count,
        "goal_ratio": GOAL_RATIO,
        "ratio_ledger_vs_raw_sqlite": {kind: round(value, 3) for kind, value in ratios.items()},
        "environment": {
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": sqlalchemy.__version__,
            "psycopg": psycopg.__version__,
            "cpus": os.cpu_count(),
        },
        "runs": [asdict(run) | {"per_second": round(run.per_second, 1)} for run in runs],
    }


def print_table(runs: list[Run], ratios: dict[str, float]) -> None:
    print(f"{'backend':<12}{'subject':<24}{'workers':>8}{'operations':>12}{'seconds':>9}{'per second':>12}  books")
    for run in runs:
        books = "sound" if run.books_sound else "BROKEN"
        print(
            f"{run.backend:<12}{run.subject:<24}{run.workers:>8}{run.operations:>12}"
            f"{run.seconds:>9.2f}{run.per_second:>12.0f}  {books}"
        )
    verdict = "meets" if ratios["transfers"] >= GOAL_RATIO else "BELOW"
    print(f"\nSQLite ledger / raw sqlite3, transfers: {ratios['transfers']:.2f} ({verdict} the goal of {GOAL_RATIO})")
    print(f"SQLite ledger / raw sqlite3, reads: {ratios['reads']:.2f} (pooled transaction vs bare SELECT; no goal)")


if __name__ == "__main__":
    main()
