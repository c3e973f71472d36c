-- 0001: the double-entry ledger.
-- Portable SQLite/PostgreSQL. Money is BIGINT minor units; timestamps are fixed-width
-- ISO-8601 UTC text (YYYY-MM-DDTHH:MM:SS.ffffffZ), which sorts chronologically.

-- kind 'system' accounts (SYS-EXTERNAL-<currency>) stand for money outside the bank and
-- may go negative; customer accounts never may, and a closed account holds nothing.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('customer', 'system')),
    owner TEXT NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    balance_minor BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    closed_at TEXT,
    CHECK (kind = 'system' OR balance_minor >= 0),
    CHECK (status = 'open' OR (balance_minor = 0 AND closed_at IS NOT NULL))
);

-- One row per money movement; its entries sum to zero. A non-null idempotency_key names
-- the request that produced it, so one key can never produce two movements.
CREATE TABLE transactions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('transfer', 'deposit', 'close_sweep', 'funding')),
    memo TEXT,
    created_at TEXT NOT NULL,
    idempotency_key TEXT UNIQUE
);

-- Signed legs: negative debits the account, positive credits it.
CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0)
);

CREATE INDEX entries_by_account ON entries (account_id, transaction_id);
CREATE INDEX entries_by_transaction ON entries (transaction_id);

-- The stored outcome of every request made with an idempotency key.
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    request_digest TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
