"""Assembly: ledger + policy + gate + tools into one `MCPServer`, from `Settings`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity

from mcp_server.audit.keys import check_key_file
from mcp_server.audit.sequencer import Background, Sequencer, check_signer
from mcp_server.audit.writer import AuditWriter
from mcp_server.clock_check import ClockWatch
from mcp_server.desk.config import DeskConfig
from mcp_server.edge import Edge
from mcp_server.expiry import ExpirySweep
from mcp_server.http.oauth import RoleToken
from mcp_server.ledger.books import Ledger
from mcp_server.settings import Settings
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import TOOL_ARGUMENTS, ledger_actions, register_tools
from policy.gate import Gate
from policy.loader import load_policy
from policy.mcp.asked import question_digest
from policy.mcp.waits import Waits

SERVER_NAME = "bankgate"
STATE_TTL_GRACE = 60.0
"""Sealed state outlives the approval by this much, so a late answer gets a clean 'expired'."""

INSTRUCTIONS = (
    "Banking tools over a real ledger. Every call is checked by the bank's policy; when a human "
    "operator must approve, the server asks the operator itself. Relay each tool's message to the user."
)

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """What the tools' resolvers reach through the lifespan context (see `policy.mcp.round`)."""

    gate: Gate
    ledger: Ledger
    default_principal: str
    sequencer: Background
    """Chains this process's (and any other's) audit records while a server runs (`build_server`), and runs
    `expiry` on the same thread."""
    expiry: ExpirySweep
    """Ends the approvals whose callers never came back (`mcp_server.expiry`)."""
    clock: ClockWatch | None = field(default=None)
    """This server's clock held to the database's (`mcp_server.clock_check`): checked at start, before each sweep."""
    desk: DeskConfig | None = field(default=None)
    """Where approvers decide (the tools link there); None when the server runs no desk."""
    waits: Waits = field(default_factory=Waits)
    """The calls waiting inline for a human, which an HTTP server's drain ends (`mcp_server.http.drain`)."""

    def caller(self, ctx: Context) -> tuple[str, tuple[str, ...]]:
        """The authenticated caller over HTTP with the roles its OAuth token carries (none for a static
        token); the configured local principal, with no such roles, otherwise."""
        token = get_access_token()
        if token is None:
            return self.default_principal, ()
        return token.client_id, token.roles if isinstance(token, RoleToken) else ()

    @property
    def has_desk(self) -> bool:
        return self.desk is not None

    def approval_url(self, ref: str) -> str | None:
        """The desk page of approval `ref` (no credential in it: the approver signs in there)."""
        return self.desk.approval_url(ref) if self.desk is not None else None


def open_state(settings: Settings, *, create: bool = False, seed: bool = False) -> AppState:
    """Open (and migrate) the ledger, load the policy, and build the gate.

    Only `create` makes a ledger where there is none, and only `seed` puts demo money in an
    empty one: the callers decide (see `Settings.creates_ledger`), never a default here.
    """
    policy = load_policy(settings.policy, catalog=TOOL_ARGUMENTS)  # a bad policy, desk URL or key file creates no
    desk = _desk(settings)  # ledger, key or money
    audit = AuditWriter(settings.audit_key_file)
    check_key_file(audit.key_path)
    # Refused for its key, a start leaves the ledger unmigrated and makes no key (`check_signer`).
    db = Database.open(settings.db_url, create=create, before_migrating=partial(check_signer, audit))
    log.info("audit records are signed with key %s from %s", audit.signer.key_id, audit.key_path)
    sequencer = Sequencer(db, audit)
    sequencer.check_start()  # before anything is signed with a key or for a ledger the chain does not know
    sequencer.seal()  # the ledger's id under a signed head from this start on (migrated just now, or new)
    ledger = Ledger(db, max_amount_minor=settings.max_amount_minor, audit=audit)
    if seed and not ledger.accounts():
        ledger.seed_demo()
        log.info("created the demo accounts ACC-001, ACC-002, ACC-003")
    actions = ledger_actions(ledger, policy)
    gate = Gate(
        policy,
        SqlGateStore(db, audit),
        actions,
        approval_ttl=settings.approval_timeout,
        question_digest=question_digest,
        max_pending=settings.max_pending_approvals,
    )
    clock = ClockWatch(db)
    expiry = ExpirySweep(gate, watch=clock)
    return AppState(
        gate=gate,
        ledger=ledger,
        default_principal=settings.principal,
        sequencer=Background(sequencer, chores=(expiry.due,)),
        expiry=expiry,
        clock=clock,
        desk=desk,
    )


def _desk(settings: Settings) -> DeskConfig | None:
    """The desk's address as configured (stdio's actual port replaces it once the desk listens)."""
    if not settings.desk:
        return None
    # Imported here: the desk's server module imports the HTTP app, which imports this module.
    from mcp_server.desk.server import config_for, served_port

    return config_for(settings, served_port(settings))


def build_server(
    state: AppState,
    settings: Settings,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer[AppState]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        with state.sequencer.running():
            yield state

    keys = settings.state_keys()
    ttl = settings.approval_timeout + STATE_TTL_GRACE
    security = RequestStateSecurity(keys=keys, ttl=ttl) if keys else RequestStateSecurity.ephemeral(ttl=ttl)
    server: MCPServer[AppState] = MCPServer(
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        request_state_security=security,
        middleware=[Edge(state.gate.actions)],
        token_verifier=token_verifier,
        auth=auth,
    )
    register_tools(server, state.gate.policy)
    return server
