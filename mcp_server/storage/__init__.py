"""Storage under the ledger and the gate: the database and its migrations, hot-path statements,
PostgreSQL advisory locks (`locks`) and the idempotency store."""
