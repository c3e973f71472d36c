"""Many writers at once: money is conserved, nothing overdraws, and no lock error escapes."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pytest import MonkeyPatch
from sqlalchemy import Connection, text

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from mcp_server.storage.database import Database
from mcp_server.storage.locks import LEDGER, Space
from tests.ledger.helpers import customer_total
from tests.support import ledger_transfer, snapshot

WORKERS = 8
TRANSFERS_PER_WORKER = 500
ACCOUNTS = 10


def run_workers(count: int, job: Callable[[int], None]) -> list[BaseException]:
    """Run ``job(worker_number)`` on ``count`` threads started together; return what they raised."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        start.wait()
        try:
            job(number)
        except BaseException as exc:  # collected and asserted on by the caller
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_random_transfers_from_many_workers_conserve_money(ledger: Ledger) -> None:
    ids = [ledger.create_account(f"Worker Account {n}").id for n in range(ACCOUNTS)]
    for account in ids:
        ledger.deposit(account, "1000.00")
    total = customer_total(ledger.db)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def job(number: int) -> None:
        rng = random.Random(number)
        for _ in range(TRANSFERS_PER_WORKER):
            source, target = rng.sample(ids, 2)
            try:
                ledger_transfer(ledger, source, target, rng.randint(1, 300_00) / 100)
                outcome = "ok"
            except LedgerError as error:
                assert error.code == "insufficient_funds", error
                outcome = error.code
            with lock:
                outcomes[outcome] += 1

    assert run_workers(WORKERS, job) == []
    assert sum(outcomes.values()) == WORKERS * TRANSFERS_PER_WORKER
    assert outcomes["ok"] > 0
    assert ledger.check_invariants() == []
    assert customer_total(ledger.db) == total
    assert snapshot(ledger.db)["transactions"] == ACCOUNTS + outcomes["ok"]


def test_racing_withdrawals_never_overdraw(ledger: Ledger) -> None:
    source = ledger.create_account("Drained").id
    targets = [ledger.create_account(f"Receiver {n}").id for n in range(4)]
    ledger.deposit(source, "100.00")
    succeeded: list[int] = []

    def job(number: int) -> None:
        for attempt in range(25):
            try:
                ledger_transfer(ledger, source, targets[(number + attempt) % len(targets)], "1.00")
                succeeded.append(1)
            except LedgerError as error:
                assert error.code == "insufficient_funds", error

    assert run_workers(WORKERS, job) == []
    assert len(succeeded) == 100  # exactly the 100 one-dollar transfers the balance covers
    assert ledger.balance(source).balance_minor == 0
    assert sum(ledger.balance(t).balance_minor for t in targets) == 100_00
    assert ledger.check_invariants() == []


def test_concurrent_replays_of_one_key_move_money_once(ledger: Ledger) -> None:
    ledger.seed_demo()
    receipts = []

    def job(number: int) -> None:
        receipts.append(ledger_transfer(ledger, "ACC-001", "ACC-002", "10.00", idempotency_key="same-request"))

    assert run_workers(WORKERS, job) == []
    assert len({r.transaction_id for r in receipts}) == 1
    assert ledger.balance("ACC-001").balance_minor == 500000 - 1000
    assert ledger.check_invariants() == []


def test_servers_seeding_a_new_ledger_together_fund_it_once(database_url: str) -> None:
    """Replicas started together with --seed-demo on a new ledger: each finds it empty at start, and the
    seed is a no-op for all but the first, never a crash on the accounts another just created."""
    databases = [Database.open(database_url) for _ in range(4)]
    try:
        ledgers = [Ledger(db) for db in databases]

        def seed(number: int) -> None:
            ledgers[number].seed_demo()

        assert run_workers(len(ledgers), seed) == []
        assert ledgers[0].balance("ACC-001").balance_minor == 500000
        assert ledgers[0].check_invariants() == []
    finally:
        for db in databases:
            db.close()


def test_an_id_of_a_number_being_created_meanwhile_is_refused(ledger: Ledger, monkeypatch: MonkeyPatch) -> None:
    """`admin create --id ACC-07` while another transaction creates ACC-007: the second to commit is refused, as it
    is when the first has committed (an id differing only by leading zeros reads as the other account). Each
    transaction saw only committed ids, so on PostgreSQL both were created."""
    if ledger.db.dialect == "sqlite":
        pytest.skip("a SQLite write transaction holds the whole file: nothing commits between its statements")
    inserted, release = threading.Event(), threading.Event()
    insert = Ledger._insert_account

    def held_open(self: Ledger, conn: Connection, account_id: str, *args: str) -> Any:
        row = insert(self, conn, account_id, *args)
        if account_id == "ACC-007":
            inserted.set()
            release.wait(10)
        return row

    monkeypatch.setattr(Ledger, "_insert_account", held_open)
    first = threading.Thread(target=ledger.create_account, args=("Ann", "USD", "ACC-007"))
    first.start()
    assert inserted.wait(10)
    failures: list[BaseException] = []
    second = threading.Thread(target=lambda: _collect(failures, lambda: ledger.create_account("Bob", "USD", "ACC-07")))
    second.start()
    waiting_or_done(ledger.db, second)
    release.set()
    first.join(10)
    second.join(10)

    assert [str(f) for f in failures] == [
        "Account ACC-007 has the same number as ACC-07; an id that differs only in leading zeros would read as "
        "that account. Choose another number."
    ]
    assert [a.id for a in ledger.accounts()] == ["ACC-007"]


def _collect(failures: list[BaseException], work: Callable[[], object]) -> None:
    try:
        work()
    except LedgerError as exc:
        failures.append(exc)


def waiting_or_done(db: Database, thread: threading.Thread) -> None:
    """Until `thread` ended or a transaction waits for this ledger's account-numbers turn (PostgreSQL); no event
    says either."""
    deadline = time.monotonic() + 10
    turn = {"space": int(Space.ACCOUNT_NUMBERS), "name": "customer"}
    while thread.is_alive() and not db.read(lambda conn: conn.execute(_WAITING, turn).scalar_one()):
        assert time.monotonic() < deadline, "neither done nor waiting"
        time.sleep(0.01)


_WAITING = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = :space"
    f" AND objid = CAST(hashtext({LEDGER} || '/' || :name) AS oid) AND objsubid = 2)"
)
"""That turn's, not any: other tests' transactions wait for turns of their own in the same database (pytest-xdist)."""
