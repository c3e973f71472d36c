"""Storage under the ledger and the gate: the database and its migrations, hot-path statements,
PostgreSQL advisory locks (`locks`), the idempotency store and the gate's store (`gate_store`)."""
