"""The books' own invariants, read back from what the database holds: each entry under a transaction and on an account
the ledger holds, each transaction balanced and two-legged in one currency, each account's balance the sum of its
entries, no customer account negative, no closed one holding money.

The ledger keeps them on every posting (`books.Ledger._post`, the schema's CHECKs); reading them back finds what
was written behind the server's back. `admin invariants` prints them, and `audit verify` names them with its other
findings: a balance raised in place, with no transaction and no entry, is money no record and no journal row
accounts for, which the gate would then spend as any other (each spending signed and journaled, so nothing else
the audit compares would disagree). So are journal rows under a transaction id no `transactions` row holds (a
foreign key the sqlite3 shell does not check): the audit reads the journal by its transactions, so only this
sees them.
"""

from sqlalchemy import Connection

from mcp_server.storage.statement import Statement

_INVARIANTS: tuple[tuple[str, Statement], ...] = (
    (
        "transaction {0} entries sum to {1}, not zero",
        Statement(
            "SELECT transaction_id, SUM(amount_minor) FROM entries"
            " GROUP BY transaction_id HAVING SUM(amount_minor) <> 0"
        ),
    ),
    (
        "entry {0} moves {1} on account {2} under transaction {3}, which the ledger does not hold",
        Statement(
            "SELECT e.id, e.amount_minor, e.account_id, e.transaction_id FROM entries e"
            " LEFT JOIN transactions t ON t.id = e.transaction_id WHERE t.id IS NULL"
        ),
    ),
    (
        "entry {0} moves {1} under transaction {2} on account {3}, which the ledger does not hold",
        Statement(
            "SELECT e.id, e.amount_minor, e.transaction_id, e.account_id FROM entries e"
            " LEFT JOIN accounts a ON a.id = e.account_id WHERE a.id IS NULL"
        ),
    ),
    (
        "transaction {0} has {1} entries, not two",
        Statement(
            "SELECT t.id, COUNT(e.id) FROM transactions t LEFT JOIN entries e ON e.transaction_id = t.id"
            " GROUP BY t.id HAVING COUNT(e.id) <> 2"
        ),
    ),
    (
        "transaction {0} mixes {1} currencies",
        Statement(
            "SELECT e.transaction_id, COUNT(DISTINCT a.currency) FROM entries e"
            " JOIN accounts a ON a.id = e.account_id"
            " GROUP BY e.transaction_id HAVING COUNT(DISTINCT a.currency) <> 1"
        ),
    ),
    (
        "the {0} journal sums to {1}, not zero",
        Statement(
            "SELECT a.currency, SUM(e.amount_minor) FROM entries e JOIN accounts a ON a.id = e.account_id"
            " GROUP BY a.currency HAVING SUM(e.amount_minor) <> 0"
        ),
    ),
    (
        "account {0} balance {1} differs from the sum of its entries {2}",
        Statement(
            "SELECT a.id, a.balance_minor, COALESCE(SUM(e.amount_minor), 0) FROM accounts a"
            " LEFT JOIN entries e ON e.account_id = a.id GROUP BY a.id, a.balance_minor"
            " HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)"
        ),
    ),
    (
        "customer account {0} is negative ({1})",
        Statement("SELECT id, balance_minor FROM accounts WHERE kind = 'customer' AND balance_minor < 0"),
    ),
    (
        "closed account {0} still holds {1}",
        Statement("SELECT id, balance_minor FROM accounts WHERE status = 'closed' AND balance_minor <> 0"),
    ),
)
"""(description, query): each row returned is one violation, rendered by `str.format`."""


def violations(conn: Connection) -> list[str]:
    """Every violated invariant, described; empty when the books are sound."""
    return [description.format(*row) for description, query in _INVARIANTS for row in query.all(conn)]
