-- 0007: the approval desk. Approvers are people, distinct from MCP principals; each signs in
-- with a passkey (WebAuthn) and signs exactly the approval they decide. Secrets (enrollment
-- links, session cookies) are stored only as SHA-256 hex digests. Times are epoch seconds.

CREATE TABLE desk_approvers (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'revoked')),
    user_handle TEXT NOT NULL UNIQUE,
    added_by TEXT NOT NULL,
    added_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);

-- One-time enrollment links; only the newest unused one of an approver is valid.
CREATE TABLE desk_enrollments (
    token_sha256 TEXT PRIMARY KEY,
    approver TEXT NOT NULL REFERENCES desk_approvers (name),
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);

-- Registered passkeys; kept after revocation, so past signatures still verify offline.
CREATE TABLE desk_credentials (
    credential_id TEXT PRIMARY KEY,
    approver TEXT NOT NULL REFERENCES desk_approvers (name),
    public_key TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    rp_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE desk_sessions (
    token_sha256 TEXT PRIMARY KEY,
    approver TEXT NOT NULL REFERENCES desk_approvers (name),
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

-- Server nonces of WebAuthn ceremonies: single use (used_at), short-lived (expires_at).
-- purpose 'decide' also keeps what the challenge committed to.
CREATE TABLE desk_challenges (
    nonce TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('enroll', 'sign_in', 'decide')),
    subject TEXT,
    approval_ref TEXT,
    verdict TEXT,
    binding TEXT,
    question_sha256 TEXT,
    challenge TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);

-- Failed sign-ins, per client address and per approver, for rate limiting across replicas.
CREATE TABLE desk_failures (
    scope TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);

CREATE INDEX desk_failures_by_scope ON desk_failures (scope, at);

-- At most one decision per approval, with everything needed to re-verify its signature offline.
CREATE TABLE desk_decisions (
    approval_ref TEXT PRIMARY KEY REFERENCES approvals (ref),
    approver TEXT NOT NULL REFERENCES desk_approvers (name),
    verdict TEXT NOT NULL CHECK (verdict IN ('approved', 'rejected')),
    note TEXT,
    decided_at DOUBLE PRECISION NOT NULL,
    binding TEXT NOT NULL,
    question_sha256 TEXT NOT NULL,
    nonce TEXT NOT NULL,
    nonce_expires_at BIGINT NOT NULL,
    credential_id TEXT NOT NULL REFERENCES desk_credentials (credential_id),
    rp_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    assertion_json TEXT NOT NULL
);

CREATE INDEX desk_decisions_by_approver ON desk_decisions (approver, decided_at)
