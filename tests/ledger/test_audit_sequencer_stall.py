"""Records written without the key cannot stall the chain (both backends).

The sequencer reads waiting records a batch (`BATCH_LIMIT`) at a time, oldest `rid` first, and leaves any
it cannot verify unchained. A database writer without the key who inserts a full batch of such records,
with `rid`s that sort before every real one, must not keep the records the server acknowledged from ever
being chained: they are chained past the forgeries, which stay unchained and named.
"""

from sqlalchemy import text

from mcp_server.audit import reader as audit_log
from mcp_server.audit.sequencer import BATCH_LIMIT, Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database


def test_a_batch_of_forged_records_sorting_first_does_not_stall_the_chain(database: Database) -> None:
    ledger = Ledger(database)
    account = ledger.create_account("Ada").id
    forged = [
        {"rid": f"0000000000000000-forged-{n:06d}", "at": "2026-01-01T00:00:00.000000Z", "event": "executed",
         "principal": "mallory", "tool": "transfer_funds", "arguments_json": "{}", "policy_version": "",
         "matched_rules_json": "[]", "reason": "", "amount_minor": 0, "key_id": "0" * 16, "signature": "00"}
        for n in range(BATCH_LIMIT + 1)
    ]  # fmt: skip
    columns = ", ".join(forged[0])
    insert = text(f"INSERT INTO audit_log ({columns}) VALUES (:{', :'.join(forged[0])})")
    database.run(lambda conn: conn.execute(insert, forged))
    ledger.deposit(account, "5")  # acknowledged: its record must be chained

    sequencer = Sequencer(database, AuditWriter())
    sequencer.chain()

    unchained = "SELECT rid FROM audit_log WHERE seq IS NULL AND rid NOT LIKE '0000000000000000-forged-%'"
    assert database.read(lambda conn: conn.execute(text(unchained)).all()) == [], "every real record is chained"
    verification = audit_log.verify(database)
    assert verification.records == 1 and verification.pending == BATCH_LIMIT + 1
    assert all("forged" in str(finding) for finding in verification.findings)
