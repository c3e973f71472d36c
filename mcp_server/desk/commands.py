"""The `approvers` commands: change or list approvers in the ledger named by the settings."""

import time

from mcp.server.transport_security import TransportSecuritySettings

from mcp_server.audit.sequencer import checked_writer
from mcp_server.cli.admin import existing
from mcp_server.desk.approvers import ApproverAdmin, listed
from mcp_server.desk.presence import live_ports
from mcp_server.desk.server import served_port, settings_desk_config
from mcp_server.ledger.free_text import shown
from mcp_server.settings import Settings


def _admin(settings: Settings) -> ApproverAdmin:
    db = existing(settings)
    return ApproverAdmin(db, checked_writer(db, settings.audit_key_file))


def approvers_add(settings: Settings, name: str, role: str | None) -> int:
    admin = _admin(settings)
    configured = served_port(settings)
    # Beside stdio the desk's port is the one it could take: the link names a port a desk of this ledger renewed
    # (`presence`), never merely the configured one, which anything may hold.
    beside_stdio = settings.transport == "stdio" and not (settings.desk_url or settings.public_url)
    live = admin.db.read(lambda conn: live_ports(conn, time.time())) if beside_stdio else []
    port = configured if configured in live or not live else live[0]
    config = settings_desk_config(settings, port, TransportSecuritySettings())
    token, expires = admin.add(name, role)
    until = time.strftime("%H:%M:%S UTC", time.gmtime(expires))
    print(f"approver {name} invited. Send them this one-time enrollment link (valid until {until}):")
    print(f"  {config.enrollment_url(token)}")
    print("It registers a passkey at the approval desk; open it where the desk is served.")
    if beside_stdio and not live:
        print(
            "No server has served this ledger's desk in the last minute: open the link once one does (it prints "
            f'"approval desk at …"); until then whatever holds port {port} would receive it.'
        )
    elif port != configured:
        print(
            f"This ledger's desk is served on port {port}, not on the configured {configured} (taken by something "
            "else when the server started, or the server was given another port)."
        )
    return 0


def approvers_list(settings: Settings) -> int:
    found = listed(existing(settings))
    for approver in found:
        print(approver.render())
    if not found:
        print("no approvers (add one with `bankgate-mcp approvers add NAME`)")
    return 0


def approvers_revoke(settings: Settings, name: str) -> int:
    _admin(settings).revoke(name)
    print(
        f"revoked: {name} can no longer sign in or sign approvals, and their yeses not yet run will not run "
        "(past decisions still verify)"
    )
    return 0


def approvers_link(settings: Settings, name: str, principal: str) -> int:
    _admin(settings).link(name, principal)
    print(
        f"linked: {name} acts as {shown(principal)}, so the desk will not let them decide its requests, "
        "nor run a yes they gave one"
    )
    return 0


def approvers_unlink(settings: Settings, name: str, principal: str) -> int:
    _admin(settings).unlink(name, principal)
    print(f"unlinked: {name} may decide requests of {shown(principal)} again")
    return 0
