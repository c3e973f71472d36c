"""A transaction's audit records each store their own time, arguments and rules (both backends).

The writer renders a value once when the next record of the batch carries the very same object (a settlement's
`approved` and outcome records share the call's arguments, the decision's rules and the time): a record whose
values differ, or are only equal, must still store and sign its own.
"""

from sqlalchemy import text

from mcp_server.audit import reader as audit_log
from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.storage.database import Database
from policy.store import AuditEntry

AT = 1_790_000_000.25


def entry(event: str, at: float, arguments: dict[str, str], rules: tuple[str, ...]) -> AuditEntry:
    return AuditEntry(at, event, "ada", "transfer_funds", arguments, "v1", rules)


def test_each_record_of_a_batch_stores_its_own_time_arguments_and_rules(database: Database) -> None:
    call, rules = {"amount": "1.00", "to_account": "ACC-002"}, ("above-ceiling",)
    entries = [
        entry("requested", AT, call, rules),
        entry("approved", AT, call, rules),  # the very same objects: rendered once
        entry("executed", AT + 1.5, {"amount": "2.00"}, ("other", "rule")),  # other values
        entry("denied", AT + 1.5, {"amount": "2.00"}, ("other", "rule")),  # equal values, other objects
        entry("expired", AT, call, ()),  # back to the first ones, after others
    ]
    writer = AuditWriter()
    database.run(lambda conn: writer.append(conn, entries))

    stored = database.read(
        lambda conn: conn.execute(
            text("SELECT event, at, arguments_json, matched_rules_json FROM audit_log ORDER BY rid")
        ).all()
    )
    first, later = "2026-09-21T14:13:20.250000Z", "2026-09-21T14:13:21.750000Z"
    call_json, other_json = '{"amount":"1.00","to_account":"ACC-002"}', '{"amount":"2.00"}'
    assert [tuple(row) for row in stored] == [
        ("requested", first, call_json, '["above-ceiling"]'),
        ("approved", first, call_json, '["above-ceiling"]'),
        ("executed", later, other_json, '["other","rule"]'),
        ("denied", later, other_json, '["other","rule"]'),
        ("expired", first, call_json, "[]"),
    ]
    Sequencer(database, writer).chain()
    verification = audit_log.verify(database)
    assert verification.findings == [] and verification.records == len(entries)
