"""Approvers: people who decide approvals at the desk, distinct from MCP principals.

`bankgate-mcp approvers add` invites one (a one-time enrollment link, stored hashed, valid for
`ENROLLMENT_TTL`), the link registers a passkey and activates the approver, `revoke` ends it:
a revoked approver's sessions are deleted and its passkeys no longer sign in or sign (they stay
stored, so its past decisions still verify offline). `link` records an MCP principal the same
person calls tools as, so the desk never lets them decide that principal's requests (four eyes;
`own_principals`). A yes signed before either whose call has not run runs nothing (the gate reads the
approver's standing when it settles, holding the row these change: `gate_store.SqlGateTx.desk_decision`).
Every change is an audit record written in the same transaction.
"""

import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, text

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.tokens import b64url, new_token, token_hash
from mcp_server.ledger.entitlements import ADMIN_PRINCIPAL, stored_principal
from mcp_server.ledger.free_text import PRINCIPAL_RULE, is_principal_name, shown
from mcp_server.storage.database import Database
from policy.store import AuditEntry

ENROLLMENT_TTL = 15 * 60.0
AUDIT_TOOL = "approvers"
LINKED, UNLINKED = "approver_linked", "approver_unlinked"
"""The audit events of `ApproverAdmin.link` and `unlink`, whose arguments name the approver and the principal."""
ENROLLED, REVOKED = "approver_enrolled", "approver_revoked"
"""The audit events of a passkey registered (naming it and its public key) and of `ApproverAdmin.revoke`."""
DEFAULT_ROLE = "approver"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class ApproverError(ValueError):
    """A refused approver change; the message says why and that nothing changed."""


@dataclass(frozen=True)
class Approver:
    name: str
    role: str
    status: str
    added_by: str
    added_at: float
    passkeys: int
    principals: tuple[str, ...] = ()
    """The MCP principals this approver also acts as: their requests are not theirs to decide."""

    def render(self) -> str:
        added = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.added_at))
        who = f"{shown(self.name):<20} {shown(self.role):<12} {self.status:<8}"  # as stored: it may have been edited
        acts = f"  acts as: {', '.join(shown(p) for p in self.principals)}" if self.principals else ""
        return f"{who} passkeys {self.passkeys}  added {added} UTC by {shown(self.added_by)}{acts}"


def parse_name(value: str) -> str:
    if _NAME.fullmatch(value):
        return value
    raise ApproverError(
        f"approver name {value!r} is not valid: 1 to 64 letters, digits or . _ @ - (starting with a letter or digit)"
    )


def _principal(value: str) -> str:
    if is_principal_name(value):
        return value
    raise ApproverError(f"principal {shown(value)!r} is not a name any credential may carry: it {PRINCIPAL_RULE}")


def parse_role(value: str) -> str:
    if _ROLE.fullmatch(value):
        return value
    raise ApproverError(f"role {value!r} is not valid: 1 to 32 lower-case letters, digits, _ or - (e.g. approver)")


_PRINCIPALS = text("SELECT principal FROM desk_approver_principals WHERE approver = :a")


def own_principals(conn: Connection, approver: str) -> frozenset[str]:
    """The principals `approver` acts as (`ApproverAdmin.link`), read in the caller's transaction."""
    return frozenset(row[0] for row in conn.execute(_PRINCIPALS, {"a": approver}))


def audit_entry(event: str, principal: str, arguments: dict[str, str]) -> AuditEntry:
    return AuditEntry(time.time(), event, principal, AUDIT_TOOL, arguments, policy_version="-")


class ApproverAdmin:
    """The `approvers` commands: each change and its audit record in one transaction."""

    def __init__(self, db: Database, audit: AuditWriter) -> None:
        self.db = db
        self.audit = audit

    def add(self, name: str, role: str | None = None) -> tuple[str, float]:
        """Invite `name` (or re-invite one who never enrolled, keeping its role unless `role` is given):
        (enrollment token, its expiry)."""
        name = parse_name(name)
        given = None if role is None else parse_role(role)
        token, handle = new_token(), b64url(secrets.token_bytes(32))

        def work(conn: Connection) -> tuple[str, float]:
            now = time.time()
            row = conn.execute(text("SELECT status, role FROM desk_approvers WHERE name = :n"), {"n": name}).first()
            if row is not None and row.status != "invited":
                raise ApproverError(
                    f"approver {name} is {row.status}; nothing changed"
                    + (" (a revoked name is never reused: choose another)" if row.status == "revoked" else "")
                )
            role = given or (DEFAULT_ROLE if row is None else row.role)
            if row is None:
                conn.execute(
                    text(
                        "INSERT INTO desk_approvers (name, role, status, user_handle, added_by, added_at)"
                        " VALUES (:n, :r, 'invited', :h, :by, :at)"
                    ),
                    {"n": name, "r": role, "h": handle, "by": ADMIN_PRINCIPAL, "at": now},
                )
            else:
                conn.execute(text("UPDATE desk_approvers SET role = :r WHERE name = :n"), {"n": name, "r": role})
                conn.execute(text("DELETE FROM desk_enrollments WHERE approver = :n"), {"n": name})
            expires = now + ENROLLMENT_TTL
            conn.execute(
                text("INSERT INTO desk_enrollments (token_sha256, approver, expires_at) VALUES (:t, :n, :e)"),
                {"t": token_hash(token), "n": name, "e": expires},
            )
            event = "approver_added" if row is None else "approver_invited"
            self.audit.append(conn, [audit_entry(event, ADMIN_PRINCIPAL, {"approver": name, "role": role})])
            return token, expires

        return self.db.run(work)

    def revoke(self, name: str) -> None:
        name = parse_name(name)

        def work(conn: Connection) -> None:
            changed = conn.execute(
                text(
                    "UPDATE desk_approvers SET status = 'revoked', revoked_at = :at"
                    " WHERE name = :n AND status <> 'revoked'"
                ),
                {"n": name, "at": time.time()},
            ).rowcount
            if changed != 1:
                raise ApproverError(f"no approver {name} to revoke (unknown or already revoked); nothing changed")
            conn.execute(text("DELETE FROM desk_sessions WHERE approver = :n"), {"n": name})
            conn.execute(text("DELETE FROM desk_enrollments WHERE approver = :n"), {"n": name})
            self.audit.append(conn, [audit_entry(REVOKED, ADMIN_PRINCIPAL, {"approver": name})])

        self.db.run(work)

    def link(self, name: str, principal: str) -> None:
        """Record that approver `name` also calls tools as `principal`: from its commit, the desk refuses
        them every decision on that principal's requests. Waits for a decision of theirs being recorded
        (which holds their row, `decisions._still_active`), so none is recorded after the link."""
        self._relink(
            LINKED,
            name,
            _principal(principal),
            "INSERT INTO desk_approver_principals (approver, principal, linked_by, linked_at)"
            " VALUES (:a, :p, :by, :at) ON CONFLICT (approver, principal) DO NOTHING",
            "already acts as",
        )

    def unlink(self, name: str, principal: str) -> None:
        self._relink(
            UNLINKED,
            name,
            stored_principal(principal),  # one linked under an earlier name rule too
            "DELETE FROM desk_approver_principals WHERE approver = :a AND principal = :p",
            "does not act as",
        )

    def _relink(self, event: str, name: str, principal: str, statement: str, unchanged: str) -> None:
        """Change one approver-principal link with `statement`, audited as `event` in the same
        transaction, under the approver's row lock; `unchanged` words the refusal when no row changed."""
        name = parse_name(name)
        params = {"a": name, "p": principal, "by": ADMIN_PRINCIPAL, "at": time.time()}

        def work(conn: Connection) -> None:
            self._held(conn, name)
            if conn.execute(text(statement), params).rowcount != 1:
                raise ApproverError(f"approver {name} {unchanged} {shown(principal)}; nothing changed")
            self.audit.append(conn, [audit_entry(event, ADMIN_PRINCIPAL, {"approver": name, "principal": principal})])

        self.db.run(work)

    @staticmethod
    def _held(conn: Connection, name: str) -> None:
        """Lock approver `name`'s row (PostgreSQL), or refuse an unknown name."""
        suffix = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
        if conn.execute(text("SELECT 1 FROM desk_approvers WHERE name = :n" + suffix), {"n": name}).first() is None:
            raise ApproverError(f"no approver {name}; nothing changed")


_LISTED = text(
    "SELECT a.name, a.role, a.status, a.added_by, a.added_at, COUNT(c.credential_id) FROM desk_approvers a"
    " LEFT JOIN desk_credentials c ON c.approver = a.name"
    " GROUP BY a.name, a.role, a.status, a.added_by, a.added_at ORDER BY a.name"
)


def listed(db: Database) -> list[Approver]:
    """Every approver with its credentials and linked principals, in one snapshot: a read, so no audit writer."""

    def read(conn: Connection) -> list[Approver]:
        return [
            Approver(r[0], r[1], r[2], r[3], float(r[4]), int(r[5]), tuple(sorted(own_principals(conn, r[0]))))
            for r in conn.execute(_LISTED).all()
        ]

    return db.read(read, snapshot=True)
