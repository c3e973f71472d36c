-- 0003: entitlements, i.e. who may act on which account.
-- A small, fixed vocabulary (a new relation or role is a new migration, never a typo):
-- per account, 'owner' (read, debit, close) and 'viewer' (read only); per principal, the
-- role 'operator' (bank staff, acting on any account). What each one permits is the
-- policy's to decide; the server only reports them as facts. granted_by and granted_at
-- say who made the grant that stands; every change is also an audit record.

CREATE TABLE account_access (
    principal TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    relation TEXT NOT NULL CHECK (relation IN ('owner', 'viewer')),
    granted_by TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (principal, account_id, relation)
);

CREATE INDEX account_access_by_account ON account_access (account_id, principal);

CREATE TABLE principal_roles (
    principal TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator')),
    granted_by TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (principal, role)
);
