"""Entitlements: which principal may act on which account, kept in the ledger database.

Two kinds, from a small fixed vocabulary (migration 0003 enforces it):

* a **relation** of a principal to one account: `owner` (read, debit, close) or
  `viewer` (read only);
* a principal-wide **role**: `operator` (bank staff, acting on any account).

The server only reports them: a call's facts carry the caller's relations to each account
it names and the caller's roles, read in the deciding transaction, and the policy decides
what they permit. Changes made with `bankgate-mcp admin` are audit records (event
`granted`/`revoked`, tool `entitlements`, the administrator as principal) in the same
transaction as the change, so the chained audit log says who granted what and when; the
table itself keeps who made each grant that stands.
"""

import getpass
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection

from mcp_server.audit.writer import AuditWriter
from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.ledger.free_text import PRINCIPAL_RULE, is_principal_name, shown
from mcp_server.ledger.identifiers import parse_account_id
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import now_text
from policy.facts import RELATIONS, ROLES
from policy.store import APPROVER_PREFIX, AuditEntry

AUDIT_TOOL = "entitlements"
"""The `tool` of the audit records of entitlement changes."""
ADMIN_PRINCIPAL = "admin"
"""Who the audit names for money posted by ledger administration (`admin` records move nothing
towards any principal's daily total: their `amount_minor` is 0, the amount is in the receipt)."""
ADMIN_ACTOR_PREFIX = "admin:"
"""How audit records name who changed entitlements (`admin:<login>`); no caller may carry a name that begins so."""
RESERVED_PREFIXES = (ADMIN_ACTOR_PREFIX, APPROVER_PREFIX)
"""What the audit log's non-callers' names begin with (entitlement changes, desk decisions)."""
RESERVED_RULE = (
    f"may not be '{ADMIN_PRINCIPAL}' nor begin with {' or '.join(RESERVED_PREFIXES)}, in any letter case: the audit "
    "log names ledger administration and desk approvers so"
)


_LISTED = {"sqlite": "group_concat({})", "postgresql": "string_agg({}, ',')"}
"""Each dialect's aggregate of names into one comma-separated text (no name holds a comma)."""
_ACCOUNT_EXISTS = Statement("SELECT 1 FROM accounts WHERE id = :account_id AND kind = 'customer'")
_GRANT = Statement(
    "INSERT INTO account_access (principal, account_id, relation, granted_by, granted_at)"
    " VALUES (:principal, :account_id, :relation, :by, :at) ON CONFLICT DO NOTHING"
)
_REVOKE = Statement(
    "DELETE FROM account_access WHERE principal = :principal AND account_id = :account_id AND relation = :relation"
)
_GRANT_ROLE = Statement(
    "INSERT INTO principal_roles (principal, role, granted_by, granted_at)"
    " VALUES (:principal, :role, :by, :at) ON CONFLICT DO NOTHING"
)
_REVOKE_ROLE = Statement("DELETE FROM principal_roles WHERE principal = :principal AND role = :role")
_LIST = Statement(
    "SELECT principal, account_id, relation, granted_by, granted_at FROM account_access"
    " UNION ALL SELECT principal, NULL, role, granted_by, granted_at FROM principal_roles"
)


@dataclass(frozen=True)
class Held:
    """What one principal holds that bears on one call: its roles and its relations to the named accounts."""

    roles: tuple[str, ...] = ()
    relations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to(self, account_id: str) -> tuple[str, ...]:
        """The principal's relations to `account_id`, e.g. ("owner",); () when none."""
        return self.relations.get(account_id, ())


@dataclass(frozen=True)
class Grant:
    """One standing entitlement; `account_id` is None for a principal-wide role."""

    principal: str
    account_id: str | None
    name: str
    granted_by: str
    granted_at: str

    def render(self) -> str:
        target = f"on {shown(self.account_id)}" if self.account_id else "role (any account)"
        who, by, at = shown(self.principal), shown(self.granted_by), shown(self.granted_at)  # as stored: edited?
        return f"{who:<16} {self.name:<9} {target:<20} granted by {by} at {at}"


def held_columns(dialect: str) -> str:
    """Two more columns for a SELECT over `accounts`: the relations of principal `:holder` to the row's
    account and its roles, so one statement reads both accounts and what the caller holds on them."""
    listed = _LISTED[dialect]
    return (
        f", (SELECT {listed.format('relation')} FROM account_access"
        " WHERE principal = :holder AND account_id = accounts.id)"
        f", (SELECT {listed.format('role')} FROM principal_roles WHERE principal = :holder)"
    )


def held_of(columns: Iterable[tuple[str, str | None, str | None]]) -> Held:
    """The `Held` that `held_columns` read, from each row's (account id, relations, roles)."""
    roles: tuple[str, ...] = ()
    relations: dict[str, tuple[str, ...]] = {}
    for account_id, related, listed_roles in columns:
        if related:
            relations[account_id] = tuple(sorted(related.split(",")))
        if listed_roles:
            roles = tuple(sorted(listed_roles.split(",")))
    return Held(roles, relations)


def locked_holdings(for_share: str) -> Statement:
    """The read of what principal `:holder` holds on accounts `:first` and `:second` in a settling transaction,
    once their rows are locked: one row per relation (account, relation) or role (NULL, role), each locked
    `for_share` (`Database.for_share`).

    Not `held_columns`: a PostgreSQL statement reads as of its start, so a read of the accounts that waited
    for their lock would decide on entitlements revoked while it waited. A statement after the lock reads
    every revocation committed before it, and the rows it locks keep a later revocation waiting until the
    settlement ends: a revocation reported done is never followed by a movement it forbids.
    """
    return Statement(
        "SELECT a.account_id, a.relation FROM (SELECT account_id, relation FROM account_access"
        f" WHERE principal = :holder AND account_id IN (:first, :second){for_share}) a"
        f" UNION ALL SELECT NULL, r.role FROM (SELECT role FROM principal_roles WHERE principal = :holder{for_share}) r"
    )


def held_rows(rows: Iterable[tuple[str | None, str]]) -> Held:
    """The `Held` that `locked_holdings` read."""
    roles: set[str] = set()
    relations: dict[str, set[str]] = {}
    for account_id, name in rows:
        if account_id is None:
            roles.add(name)
        else:
            relations.setdefault(account_id, set()).add(name)
    return Held(tuple(sorted(roles)), {account: tuple(sorted(names)) for account, names in relations.items()})


def is_reserved_principal(name: str) -> bool:
    """Whether `name` is one the audit log gives non-callers: no credential, stdio caller or grant may carry it.
    In any letter case: "Admin:root" in a log reads as "admin:root" to the person checking it."""
    folded = name.casefold()
    return folded == ADMIN_PRINCIPAL or folded.startswith(RESERVED_PREFIXES)


def grant_in(conn: Connection, principal: str, relation: str, account_id: str, by: str) -> bool:
    """Give `principal` `relation` to `account_id`; False if it already held it."""
    params = _access(conn, _grantee(principal), relation, account_id)
    return _GRANT.run(conn, {**params, "by": by, "at": now_text()}) == 1


def grant_role_in(conn: Connection, principal: str, role: str, by: str) -> bool:
    """Give `principal` a role; False if it already had it."""
    params = _role(_grantee(principal), role)
    return _GRANT_ROLE.run(conn, {**params, "by": by, "at": now_text()}) == 1


def grants(db: Database, principal: str | None = None, account_id: str | None = None) -> list[Grant]:
    """Standing grants, optionally of one principal and/or on one account (roles count for every account)."""
    who = None if principal is None else stored_principal(principal)
    where = None if account_id is None else parse_account_id(account_id, "account_id")

    def read(conn: Connection) -> list[Grant]:
        if where is not None:
            _known_account(conn, where)
        found = [Grant(*row) for row in _LIST.all(conn)]
        return sorted(
            (g for g in found if who in (None, g.principal) and (where is None or g.account_id in (None, where))),
            key=lambda g: (g.principal, g.account_id or "", g.name),
        )

    return db.read(read)


class EntitlementAdmin:
    """Entitlement changes from `bankgate-mcp admin`, each audited in the transaction that makes it."""

    def __init__(self, db: Database, actor: str | None = None, audit: AuditWriter | None = None) -> None:
        self._store = SqlGateStore(db, audit)
        self.actor = ADMIN_ACTOR_PREFIX + parse_principal(actor or _login_name(), "--by")

    def grant(self, principal: str, relation: str, account_id: str) -> bool:
        def grant(conn: Connection) -> bool:
            return grant_in(conn, principal, relation, account_id, self.actor)

        return self._change("granted", grant, principal=principal, relation=relation, account_id=account_id)

    def revoke(self, principal: str, relation: str, account_id: str) -> bool:
        def revoke(conn: Connection) -> bool:
            return _REVOKE.run(conn, _access(conn, stored_principal(principal), relation, account_id)) == 1

        return self._change("revoked", revoke, principal=principal, relation=relation, account_id=account_id)

    def grant_role(self, principal: str, role: str) -> bool:
        def grant(conn: Connection) -> bool:
            return grant_role_in(conn, principal, role, self.actor)

        return self._change("granted", grant, principal=principal, role=role)

    def revoke_role(self, principal: str, role: str) -> bool:
        return self._change(
            "revoked",
            lambda c: _REVOKE_ROLE.run(c, _role(stored_principal(principal), role)) == 1,
            principal=principal,
            role=role,
        )

    def _change(self, event: str, apply: Callable[[Connection], bool], **arguments: str) -> bool:
        """Apply one change; if it changed anything, append its audit record in the same transaction."""

        def work(tx: SqlGateTx) -> bool:
            changed = apply(tx.conn)
            if changed:
                entry = AuditEntry(time.time(), event, self.actor, AUDIT_TOOL, arguments, policy_version="-")
                tx.append_audit(entry)
            return changed

        return self._store.transaction(work)


def parse_principal(value: object, field: str = "principal") -> str:
    """Principal names as credentials carry them (`free_text.is_principal_name`): whoever can sign in can be granted."""
    if is_principal_name(value):
        return value
    raise LedgerError(ErrorCode.INVALID_PRINCIPAL, f"{field} {PRINCIPAL_RULE}.", field=field)


def stored_principal(value: object, field: str = "principal") -> str:
    """A principal to find among what the ledger holds (a revocation, a filter): any name, since one granted
    under an earlier, looser rule must still be listed and revoked; `parse_principal` holds new grants only."""
    if isinstance(value, str) and value:
        return value
    raise LedgerError(ErrorCode.INVALID_PRINCIPAL, f"{field} must name a principal.", field=field)


def _grantee(principal: str) -> str:
    """Who may be granted something: any caller's name, none reserved (one granted before these checks can still
    be revoked: `stored_principal`)."""
    if isinstance(principal, str) and is_reserved_principal(principal):
        raise LedgerError(ErrorCode.INVALID_PRINCIPAL, f"principal {RESERVED_RULE}.", field="principal")
    return parse_principal(principal)


def _access(conn: Connection, principal: str, relation: str, account_id: str) -> dict[str, str]:
    params = {
        "principal": principal,
        "relation": _one_of(relation, RELATIONS, "relation", ErrorCode.INVALID_RELATION),
        "account_id": parse_account_id(account_id, "account_id"),
    }
    _known_account(conn, params["account_id"])
    return params


def _role(principal: str, role: str) -> dict[str, str]:
    return {"principal": principal, "role": _one_of(role, ROLES, "role", ErrorCode.INVALID_ROLE)}


def _one_of(value: object, allowed: tuple[str, ...], field: str, code: ErrorCode) -> str:
    if isinstance(value, str) and value in allowed:
        return value
    raise LedgerError(code, f"{field} must be one of: {', '.join(allowed)}.", field=field)


def _known_account(conn: Connection, account_id: str) -> None:
    if _ACCOUNT_EXISTS.one(conn, {"account_id": account_id}) is None:
        raise LedgerError(ErrorCode.UNKNOWN_ACCOUNT, f"Account {account_id} does not exist.", field="account_id")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container user without a passwd entry)
        return "unknown"
