"""Signed heads edited behind the server's back (both backends): the sequencer never signs over them.

A head deleted (the last one, or all), forged, or added past the chain leaves the chain's tail without a
valid head vouching for exactly it. The sequencer then refuses to extend the chain (`ChainRefused`), so it
never signs a head over a tail it cannot vouch for; what the server acknowledged meanwhile stays stored,
unchained, and `audit verify` names the tampering.
"""

import pytest
from sqlalchemy import text

from mcp_server.audit import reader as audit_log
from mcp_server.audit.sequencer import ChainRefused, Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("DELETE FROM audit_heads WHERE seq = (SELECT MAX(seq) FROM audit_heads)", "no valid signature covers"),
        ("DELETE FROM audit_heads", "no valid signature covers"),
        ("UPDATE audit_heads SET signature = (CASE WHEN substr(signature, 1, 1) = 'a' THEN 'b' ELSE 'a' END) "
         "|| substr(signature, 2) "
         "WHERE seq = (SELECT MAX(seq) FROM audit_heads)", "forged"),
        ("INSERT INTO audit_heads (seq, hash, at, key_id, signature, ledger) "
         "SELECT seq + 5, hash, at, key_id, signature, ledger "
         "FROM audit_heads WHERE seq = (SELECT MAX(seq) FROM audit_heads)",
         "signed head 7: its signature does not match"),
    ],
    ids=["last-deleted", "all-deleted", "forged", "copied-past-the-chain"],
)  # fmt: skip
def test_a_tampered_head_stops_the_sequencer_and_is_named(database: Database, edit: str, says: str) -> None:
    ledger = Ledger(database)
    account = ledger.create_account("Ada").id
    writer = AuditWriter()
    for _ in range(2):  # two batches: two heads
        ledger.deposit(account, "5")
        Sequencer(database, writer).chain()
    database.run(lambda conn: conn.execute(text(edit)))

    ledger.deposit(account, "7")  # acknowledged meanwhile
    with pytest.raises(ChainRefused):
        Sequencer(database, writer).chain()  # a fresh process's sequencer: nothing of the last head in memory

    verification = audit_log.verify(database)
    assert verification.records == 2 and verification.pending == 1, "the new record is kept, not chained"
    assert any(says in str(finding) for finding in verification.findings), verification.findings
    assert ledger.balance(account).balance_minor == 17_00
