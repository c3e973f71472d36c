"""`bankgate-mcp`: serve the tools, check and explain policies, verify the audit, administer the ledger."""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcp_server import commands
from mcp_server.http_app import ConfigError
from mcp_server.serve import serve
from mcp_server.settings import Settings
from policy.loader import PolicyError
from policy.results import Refusal


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bankgate-mcp",
        description="An MCP server whose banking tools run only under a human's eye. Every option can also "
        "be set as a BANKGATE_* environment variable (e.g. BANKGATE_DB_URL) or in a .env file.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = sub.add_parser("serve", help="serve the tools (stdio by default)", description=_SERVE_HELP)
    _database_option(serve_cmd)
    _policy_option(serve_cmd)
    serve_cmd.add_argument("--transport", choices=["stdio", "http"], help="stdio (default) or Streamable HTTP")
    serve_cmd.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="HTTP port (default 8765)")
    serve_cmd.add_argument(
        "--stateless",
        action="store_true",
        default=None,
        help="stateless HTTP for replicas: only 2026-07-28 clients can approve; needs BANKGATE_REQUEST_STATE_KEYS",
    )
    serve_cmd.add_argument(
        "--token-file", type=Path, help="file of 'principal token' lines (or BANKGATE_TOKENS='p=token;p2=token2')"
    )
    serve_cmd.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="serve HTTP without tokens (refused unless bound to loopback)",
    )
    serve_cmd.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        help="extra Host header value to accept, e.g. bank.example:443 (repeatable)",
    )
    serve_cmd.add_argument(
        "--allowed-origin",
        dest="allowed_origins",
        action="append",
        help="extra Origin to accept, e.g. https://app.example (repeatable)",
    )
    serve_cmd.add_argument("--max-body-bytes", type=int, help="largest HTTP request body (default 65536)")
    serve_cmd.add_argument("--approval-timeout", type=float, help="seconds a human has to answer (default 300)")
    serve_cmd.add_argument("--principal", help="principal recorded for stdio calls (default 'local')")
    serve_cmd.add_argument(
        "--no-seed",
        dest="seed_demo",
        action="store_false",
        default=None,
        help="do not create the demo accounts on a new ledger",
    )
    serve_cmd.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve_cmd.set_defaults(run=lambda s, a: serve(s))

    policy = sub.add_parser("policy", help="check or try a policy file").add_subparsers(dest="action", required=True)
    check = policy.add_parser("check", help="validate a policy file")
    check.add_argument("file", type=Path)
    check.set_defaults(run=lambda s, a: commands.policy_check(a.file))
    explain = policy.add_parser("explain", help="show the decision for a call, without executing it")
    explain.add_argument("tool")
    explain.add_argument("--args", required=True, help='arguments as JSON, e.g. \'{"account_id": "ACC-001"}\'')
    explain.add_argument("--principal", help="the caller to judge the call for (default 'local')")
    _database_option(explain)
    _policy_option(explain)
    explain.set_defaults(run=lambda s, a: commands.policy_explain(s, a.tool, a.args))

    audit = sub.add_parser("audit", help="the tamper-evident decision log").add_subparsers(dest="action", required=True)
    verify = audit.add_parser(
        "verify", help="check the signed chain against the ledger; exit 1 naming any tampered record"
    )
    _database_option(verify)
    verify.add_argument(
        "--checkpoint", type=Path, help="a file written by 'audit checkpoint': the chain must still hold its record"
    )
    verify.add_argument(
        "--public-keys", type=Path, help="verify with this file of public keys (from 'audit public-key') only"
    )
    verify.set_defaults(run=lambda s, a: commands.audit_verify(s, a.checkpoint, a.public_keys))
    checkpoint = audit.add_parser("checkpoint", help="sign the current head, to keep outside the database")
    checkpoint.add_argument("--out", type=Path, help="write it to this file (default: standard output)")
    _database_option(checkpoint)
    checkpoint.set_defaults(run=lambda s, a: commands.audit_checkpoint(s, a.out))
    adopt = audit.add_parser(
        "adopt",
        help="once, on a ledger from before signed audit: vouch for its old postings and unsigned records",
    )
    _database_option(adopt)
    adopt.set_defaults(run=lambda s, a: commands.audit_adopt(s))
    public_key = audit.add_parser("public-key", help="print the public keys that verify the audit (for auditors)")
    public_key.add_argument("--audit-key-file", type=Path, help="the signing key file (BANKGATE_AUDIT_KEY_FILE)")
    public_key.set_defaults(run=lambda s, a: commands.audit_public_key(s))
    tail = audit.add_parser("tail", help="show recent decisions")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    _database_option(tail)
    tail.set_defaults(run=lambda s, a: commands.audit_tail(s, a.n))

    admin = sub.add_parser("admin", help="ledger administration").add_subparsers(dest="action", required=True)
    accounts = admin.add_parser("accounts", help="list accounts")
    accounts.set_defaults(run=lambda s, a: commands.admin_accounts(s))
    create = admin.add_parser("create", help="open an account")
    create.add_argument("owner")
    create.add_argument("--currency", default="USD")
    create.add_argument("--id", dest="account_id")
    create.set_defaults(run=lambda s, a: commands.admin_create(s, a.owner, a.currency, a.account_id))
    deposit = admin.add_parser("deposit", help="credit money from outside the bank")
    deposit.add_argument("account_id")
    deposit.add_argument("amount")
    deposit.set_defaults(run=lambda s, a: commands.admin_deposit(s, a.account_id, a.amount))
    history = admin.add_parser("history", help="an account's movements")
    history.add_argument("account_id")
    history.set_defaults(run=lambda s, a: commands.admin_history(s, a.account_id))
    invariants = admin.add_parser("invariants", help="check the ledger's invariants")
    invariants.set_defaults(run=lambda s, a: commands.admin_invariants(s))
    for command in (accounts, create, deposit, history, invariants, *_entitlement_commands(admin)):
        _database_option(command)
    return parser


def _entitlement_commands(admin: Any) -> list[argparse.ArgumentParser]:
    """`admin grant|revoke|grants` and `admin roles grant|revoke`: who may act on which account."""
    grant = admin.add_parser("grant", help="give a principal a relation to an account (owner, viewer)")
    grant.set_defaults(run=lambda s, a: commands.admin_grant(s, a.principal, a.relation, a.account_id, a.by))
    revoke = admin.add_parser("revoke", help="take a principal's relation to an account away")
    revoke.set_defaults(run=lambda s, a: commands.admin_revoke(s, a.principal, a.relation, a.account_id, a.by))
    for command in (grant, revoke):
        command.add_argument("principal", help="as the HTTP token names it, or the stdio --principal")
        command.add_argument("relation", help="owner (read, debit, close) or viewer (read only)")
        command.add_argument("account_id")
    listing = admin.add_parser("grants", help="list entitlements (of one principal, or bearing on one account)")
    listing.add_argument("--principal")
    listing.add_argument("--account", dest="account_id")
    listing.set_defaults(run=lambda s, a: commands.admin_grants(s, a.principal, a.account_id))
    roles = admin.add_parser("roles", help="principal-wide roles").add_subparsers(dest="role_action", required=True)
    role_grant = roles.add_parser("grant", help="give a principal a role (operator: any account)")
    role_grant.set_defaults(run=lambda s, a: commands.admin_role_grant(s, a.principal, a.role, a.by))
    role_revoke = roles.add_parser("revoke", help="take a principal's role away")
    role_revoke.set_defaults(run=lambda s, a: commands.admin_role_revoke(s, a.principal, a.role, a.by))
    for command in (role_grant, role_revoke):
        command.add_argument("principal")
        command.add_argument("role", help="operator")
    changes = (grant, revoke, role_grant, role_revoke)
    for command in changes:
        command.add_argument("--by", help="who makes the change, for the audit log (default: your login name)")
    return [*changes, listing]


_SERVE_HELP = (
    "Serve get_account_balance, transfer_funds and close_account. With no options: stdio, an embedded SQLite "
    "ledger in your user data directory with demo accounts, and the shipped policy."
)


def _database_option(parser: argparse.ArgumentParser) -> None:
    """The database, and the key that signs its audit records (whatever opens the one may write the other)."""
    parser.add_argument("--db", dest="db_url", help="sqlite:///path or postgresql://... (BANKGATE_DB_URL)")
    parser.add_argument(
        "--audit-key-file", type=Path, help="audit signing key, shared by replicas (BANKGATE_AUDIT_KEY_FILE)"
    )


def _policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, help="policy TOML file (BANKGATE_POLICY); default: shipped policy")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run: Callable[[Settings, argparse.Namespace], int | None] = args.run
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    try:
        settings = Settings(**overrides)
        return run(settings, args) or 0
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"bankgate-mcp: configuration: {field}: {error['msg']}", file=sys.stderr)
    except json.JSONDecodeError as exc:
        print(f"bankgate-mcp: --args is not valid JSON: {exc}", file=sys.stderr)
    except Refusal as refusal:
        print(f"bankgate-mcp: refused ({refusal.code}): {refusal.message}", file=sys.stderr)
    except (ConfigError, PolicyError, ValueError) as exc:
        print(f"bankgate-mcp: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
