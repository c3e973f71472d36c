"""Ledger throughput beside a raw-sqlite3 baseline measured in the same run.

    python -m bench.ledger_bench [--transfers N] [--postgres-url URL] [--json]

Runs ``Ledger.transfer`` on SQLite (1 and 8 worker threads) and, when a PostgreSQL URL is
given (or ``BANKGATE_TEST_POSTGRES_URL`` is set), on PostgreSQL (1 and 16 workers, in a
throwaway schema). The baseline is plain ``sqlite3`` doing the same row writes per transfer
(two balance updates, one transaction row, two entries) on the same schema with the same
durability (WAL, ``synchronous=FULL``), but none of the ledger's reads, checks or retries.
The goal is ledger/baseline >= 0.5 on SQLite. Every run ends with ``check_invariants`` and
a check that customer money was conserved.
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
from decimal import Decimal
from pathlib import Path

import psycopg
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mcp_server.database import Database
from mcp_server.errors import LedgerError
from mcp_server.ledger import Ledger
from mcp_server.timestamps import now_text

ACCOUNTS = 200
OPENING_BALANCE = "100000.00"
GOAL_RATIO = 0.5


@dataclass(frozen=True)
class Run:
    backend: str
    subject: str
    workers: int
    transfers: int
    seconds: float
    books_sound: bool

    @property
    def per_second(self) -> float:
        return self.transfers / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=2000, help="transfers per configuration")
    parser.add_argument("--postgres-url", default=os.environ.get("BANKGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--dir", type=Path, default=None, help="where SQLite files go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for serial, workers in enumerate((1, 8)):
            url = f"sqlite:///{Path(folder) / f'ledger-{serial}.db'}"
            runs.append(bench_ledger("sqlite", url, workers, args.transfers))
        runs.append(bench_raw_sqlite(Path(folder) / "baseline.db", args.transfers))
    if args.postgres_url:
        for workers in (1, 16):
            with postgres_schema(args.postgres_url) as url:
                runs.append(bench_ledger("postgresql", url, workers, args.transfers))

    ledger_1 = next(r for r in runs if r.backend == "sqlite" and r.subject == "ledger" and r.workers == 1)
    baseline = next(r for r in runs if r.subject == "raw sqlite3")
    ratio = ledger_1.per_second / baseline.per_second
    if args.json:
        print(json.dumps(as_json(runs, ratio, args.transfers)))
    else:
        print_table(runs, ratio)
    if not all(run.books_sound for run in runs):
        sys.exit("invariant check failed")


def bench_ledger(backend: str, url: str, workers: int, transfers: int) -> Run:
    db = Database.open(url, pool_size=max(workers, 1))
    try:
        ledger = Ledger(db)
        ids = open_accounts(ledger)
        total = money_held(db)
        per_worker = transfers // workers

        def work(rng: random.Random) -> None:
            for _ in range(per_worker):
                source, target = rng.sample(ids, 2)
                try:
                    ledger.transfer(source, target, Decimal(random_amount_minor(rng)).scaleb(-2))
                except LedgerError as error:  # an emptied account is a legitimate refusal
                    if error.code != "insufficient_funds":
                        raise

        seconds = timed_threads(workers, work)
        sound = ledger.check_invariants() == [] and money_held(db) == total
        return Run(backend, "ledger", workers, per_worker * workers, seconds, sound)
    finally:
        db.close()


def bench_raw_sqlite(path: Path, transfers: int) -> Run:
    """The same row writes per transfer through bare sqlite3, on the same schema and durability."""
    url = f"sqlite:///{path}"
    db = Database.open(url)
    ids = open_accounts(Ledger(db))
    total = money_held(db)
    db.close()

    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")

    def work(rng: random.Random) -> None:
        for _ in range(transfers):
            source, target = rng.sample(ids, 2)
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
                "INSERT INTO entries (id, transaction_id, account_id, amount_minor) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
                (f"{tx}:1", tx, source, -amount, f"{tx}:2", tx, target, amount),
            )
            conn.execute("COMMIT")

    seconds = timed_threads(1, work)
    conn.close()
    db = Database.open(url)
    try:
        sound = Ledger(db).check_invariants() == [] and money_held(db) == total
    finally:
        db.close()
    return Run("sqlite", "raw sqlite3", 1, transfers, seconds, sound)


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


def timed_threads(workers: int, work: Callable[[random.Random], None]) -> float:
    """Run ``work`` on ``workers`` threads released together; wall-clock seconds until all finish."""
    start = threading.Barrier(workers + 1)
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        start.wait()
        try:
            work(random.Random(seed))
        except BaseException as exc:  # re-raised in the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(workers)]
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


def as_json(runs: list[Run], ratio: float, transfers: int) -> dict[str, object]:
    return {
        "benchmark": "ledger transfers",
        "transfers_per_configuration": transfers,
        "goal_ratio": GOAL_RATIO,
        "ratio_ledger_vs_raw_sqlite": round(ratio, 3),
        "environment": {
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": sqlalchemy.__version__,
            "psycopg": psycopg.__version__,
            "cpus": os.cpu_count(),
        },
        "runs": [asdict(run) | {"per_second": round(run.per_second, 1)} for run in runs],
    }


def print_table(runs: list[Run], ratio: float) -> None:
    print(f"{'backend':<12}{'subject':<14}{'workers':>8}{'transfers':>11}{'seconds':>9}{'transfers/s':>13}  books")
    for run in runs:
        books = "sound" if run.books_sound else "BROKEN"
        print(
            f"{run.backend:<12}{run.subject:<14}{run.workers:>8}{run.transfers:>11}"
            f"{run.seconds:>9.2f}{run.per_second:>13.0f}  {books}"
        )
    verdict = "meets" if ratio >= GOAL_RATIO else "BELOW"
    print(f"\nSQLite ledger (1 worker) / raw sqlite3: {ratio:.2f} ({verdict} the goal of {GOAL_RATIO})")


if __name__ == "__main__":
    main()
