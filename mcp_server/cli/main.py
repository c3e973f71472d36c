"""`bankgate-mcp`: serve the tools, check and explain policies, verify the audit, administer the ledger.

Only `argparse` is imported up front: the SDK, SQLAlchemy and uvicorn load when a command runs,
so `--help` and `--version` answer at once.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mcp_server.desk import cli as desk_cli

if TYPE_CHECKING:
    from mcp_server.cli import admin as admin_commands
    from mcp_server.serve import serve
    from mcp_server.settings import Settings
else:

    def _lazy(name: str) -> ModuleType:
        """`name`, imported on first attribute access (the standard library's LazyLoader)."""
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None, name
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    admin_commands = _lazy("mcp_server.cli.admin")

    def serve(settings: Settings) -> None:
        from mcp_server.serve import serve as run

        run(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bankgate-mcp",
        description="An MCP server whose banking tools run only under a human's eye. Every option can also "
        "be set as a BANKGATE_* environment variable (e.g. BANKGATE_DB_URL) or in a .env file.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
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
    serve_cmd.add_argument(
        "--max-sessions-per-principal", type=int, help="open HTTP sessions one principal may hold (default 100)"
    )
    serve_cmd.add_argument(
        "--approval-timeout", type=float, help="seconds a human has to answer (default 300, at most 30 days)"
    )
    serve_cmd.add_argument(
        "--drain-timeout",
        type=float,
        help="seconds an HTTP server stopped by SIGTERM lets running calls finish before it exits (default 20)",
    )
    serve_cmd.add_argument(
        "--forwarded-allow-ips",
        help="comma-separated addresses or networks of the proxies whose X-Forwarded-For/-Proto are believed "
        "('*': any, only for a proxy that overwrites them; default none: the connecting address counts)",
    )
    serve_cmd.add_argument(
        "--max-pending-approvals", type=int, help="approvals one principal may have waiting at once (default 20)"
    )
    serve_cmd.add_argument(
        "--principal", help="principal of stdio calls, and of HTTP calls under --no-auth (default 'local')"
    )
    serve_cmd.add_argument(
        "--create",
        action="store_true",
        default=None,
        help="create the ledger named by --db if there is none (BANKGATE_CREATE); without it a missing ledger "
        "is an error, so a mistyped URL never starts an empty bank",
    )
    _seed_options(serve_cmd)
    serve_cmd.add_argument(
        "--no-desk", dest="desk", action="store_false", default=None, help="do not serve the approval desk"
    )
    serve_cmd.add_argument(
        "--desk-port", type=int, help="loopback port of the desk beside stdio (default 8766; 0: any)"
    )
    serve_cmd.add_argument("--desk-url", help="the desk as approvers reach it, e.g. https://bank.example/desk")
    serve_cmd.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    serve_cmd.add_argument(
        "--log-format", choices=["text", "json"], help="text (default) or one JSON object per line, for deployments"
    )
    serve_cmd.set_defaults(run=lambda s, a: serve(s))

    policy = sub.add_parser("policy", help="check or try a policy file").add_subparsers(dest="action", required=True)
    check = policy.add_parser("check", help="validate a policy file")
    check.add_argument("file", type=Path, help="the policy TOML file")
    check.set_defaults(run=lambda s, a: admin_commands.policy_check(a.file))
    explain = policy.add_parser("explain", help="show the decision for a call, without executing it")
    explain.add_argument("tool", help="get_account_balance, transfer_funds or close_account")
    explain.add_argument("--args", required=True, help='arguments as JSON, e.g. \'{"account_id": "ACC-001"}\'')
    explain.add_argument("--principal", help="the caller to judge the call for (default 'local')")
    explain.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        metavar="ROLE",
        help="judge the call as if the caller's credentials carried ROLE, as an OAuth token's scope does "
        "(BANKGATE_OAUTH_ROLE_SCOPES), e.g. operator (repeatable)",
    )
    explain.add_argument(
        "--balance",
        dest="balances",
        action="append",
        default=[],
        metavar="ACCOUNT=AMOUNT",
        help="judge the policy as if ACCOUNT held AMOUNT, e.g. ACC-001=100000 (repeatable; the ledger is not changed)",
    )
    explain.add_argument(
        "--moved-today", metavar="AMOUNT", help="judge the policy as if the caller had moved AMOUNT today"
    )
    _database_option(explain)
    _policy_option(explain)
    explain.set_defaults(
        run=lambda s, a: admin_commands.policy_explain(
            s, a.tool, a.args, balances=a.balances, moved_today=a.moved_today, roles=a.roles
        )
    )

    audit = sub.add_parser("audit", help="the tamper-evident decision log").add_subparsers(dest="action", required=True)
    verify = audit.add_parser(
        "verify",
        help="chain pending records (when holding the key), check the signed chain against the ledger; "
        "exit 1 naming any tampered record",
    )
    _database_option(verify)
    verify.add_argument(
        "--checkpoint", type=Path, help="a file written by 'audit checkpoint': the chain must still hold its record"
    )
    verify.add_argument(
        "--public-keys", type=Path, help="verify with this file of public keys (from 'audit public-key') only"
    )
    verify.set_defaults(run=lambda s, a: admin_commands.audit_verify(s, a.checkpoint, a.public_keys))
    checkpoint = audit.add_parser("checkpoint", help="sign the current head, to keep outside the database")
    checkpoint.add_argument("--out", type=Path, help="write it to this file (default: standard output)")
    _database_option(checkpoint)
    checkpoint.set_defaults(run=lambda s, a: admin_commands.audit_checkpoint(s, a.out))
    adopt = audit.add_parser(
        "adopt",
        help="once, on a ledger from before signed audit: vouch for its old postings and unsigned records",
    )
    _database_option(adopt)
    adopt.set_defaults(run=lambda s, a: admin_commands.audit_adopt(s))
    public_key = audit.add_parser("public-key", help="print the public keys that verify the audit (for auditors)")
    public_key.add_argument("--audit-key-file", type=Path, help="the signing key file (BANKGATE_AUDIT_KEY_FILE)")
    public_key.set_defaults(run=lambda s, a: admin_commands.audit_public_key(s))
    tail = audit.add_parser("tail", help="show recent decisions")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    _database_option(tail)
    tail.set_defaults(run=lambda s, a: admin_commands.audit_tail(s, a.n))

    admin = sub.add_parser("admin", help="ledger administration").add_subparsers(dest="action", required=True)
    init = admin.add_parser("init", help="create (or upgrade) the ledger at --db; the only command that creates one")
    _seed_options(init)
    init.set_defaults(run=lambda s, a: admin_commands.admin_init(s))
    accounts = admin.add_parser("accounts", help="list accounts")
    accounts.set_defaults(run=lambda s, a: admin_commands.admin_accounts(s))
    create = admin.add_parser("create", help="open an account")
    create.add_argument("owner", help="the account holder's name")
    create.add_argument("--currency", default="USD", help="ISO 4217 code (default USD)")
    create.add_argument(
        "--id",
        dest="account_id",
        help="the account id, e.g. ACC-010, of a number no account has, whatever its leading zeros "
        "(default: the number after the highest)",
    )
    create.set_defaults(run=lambda s, a: admin_commands.admin_create(s, a.owner, a.currency, a.account_id))
    deposit = admin.add_parser("deposit", help="credit money from outside the bank")
    deposit.add_argument("account_id", help=_ACCOUNT_HELP)
    deposit.add_argument("amount", help="a plain decimal in the account's currency, e.g. 250.00")
    deposit.set_defaults(run=lambda s, a: admin_commands.admin_deposit(s, a.account_id, a.amount))
    history = admin.add_parser("history", help="an account's movements")
    history.add_argument("account_id", help=_ACCOUNT_HELP)
    history.set_defaults(run=lambda s, a: admin_commands.admin_history(s, a.account_id))
    invariants = admin.add_parser("invariants", help="check the ledger's invariants")
    invariants.set_defaults(run=lambda s, a: admin_commands.admin_invariants(s))
    approvals = _approvals_command(admin)
    for command in (init, accounts, create, deposit, history, invariants, approvals, *_entitlement_commands(admin)):
        _database_option(command)
    desk_cli.register(sub, _database_option)
    return parser


def _approvals_command(admin: Any) -> argparse.ArgumentParser:
    """`admin approvals`: the questions put to humans, newest first (read-only)."""
    listing: argparse.ArgumentParser = admin.add_parser(
        "approvals",
        help="list approvals, newest first: waiting, for whom, until when, and how each ended (read-only)",
    )
    listing.add_argument(
        "--status",
        default="all",
        help="only those in this state: pending, approved (said yes at the desk, its caller not back yet: still "
        "pending), executed, rejected, cancelled, expired, denied, failed, or all (default)",
    )
    # Not `principal`: that is the setting of the stdio caller, whose check would misname a bad filter.
    listing.add_argument("--principal", dest="of_principal", help="only this principal's")
    listing.add_argument("--tool", help="only this tool's, e.g. transfer_funds")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", dest="as_json", action="store_true", help="one JSON object per line")
    listing.set_defaults(
        run=lambda s, a: admin_commands.admin_approvals(s, a.status, a.of_principal, a.tool, a.limit, a.as_json)
    )
    return listing


def _entitlement_commands(admin: Any) -> list[argparse.ArgumentParser]:
    """`admin grant|revoke|grants` and `admin roles grant|revoke`: who may act on which account. The principal is
    never read into `principal`, the stdio caller's setting: its check would refuse to revoke a name granted under
    an earlier rule, and call a bad one configuration."""
    grant = admin.add_parser("grant", help="give a principal a relation to an account (owner, viewer)")
    grant.set_defaults(run=lambda s, a: admin_commands.admin_grant(s, a.grantee, a.relation, a.account_id, a.by))
    revoke = admin.add_parser("revoke", help="take a principal's relation to an account away")
    revoke.set_defaults(run=lambda s, a: admin_commands.admin_revoke(s, a.grantee, a.relation, a.account_id, a.by))
    for command in (grant, revoke):
        command.add_argument("grantee", metavar="principal", help=_PRINCIPAL_HELP)
        command.add_argument("relation", help="owner (read, debit, close) or viewer (read only)")
        command.add_argument("account_id", help=_ACCOUNT_HELP)
    listing = admin.add_parser("grants", help="list entitlements (of one principal, or bearing on one account)")
    listing.add_argument("--principal", dest="of_principal", help="only this principal's")
    listing.add_argument("--account", dest="account_id", help="only those bearing on this account")
    listing.set_defaults(run=lambda s, a: admin_commands.admin_grants(s, a.of_principal, a.account_id))
    roles = admin.add_parser("roles", help="principal-wide roles").add_subparsers(dest="role_action", required=True)
    role_grant = roles.add_parser("grant", help="give a principal a role (operator: any account)")
    role_grant.set_defaults(run=lambda s, a: admin_commands.admin_role_grant(s, a.grantee, a.role, a.by))
    role_revoke = roles.add_parser("revoke", help="take a principal's role away")
    role_revoke.set_defaults(run=lambda s, a: admin_commands.admin_role_revoke(s, a.grantee, a.role, a.by))
    for command in (role_grant, role_revoke):
        command.add_argument("grantee", metavar="principal", help=_PRINCIPAL_HELP)
        command.add_argument("role", help="operator")
    changes = (grant, revoke, role_grant, role_revoke)
    for command in changes:
        command.add_argument("--by", help="who makes the change, for the audit log (default: your login name)")
    return [*changes, listing]


_ACCOUNT_HELP = "the account, e.g. ACC-001"
_PRINCIPAL_HELP = "as the HTTP token names it, or the stdio --principal"
_SERVE_HELP = (
    "Serve get_account_balance, transfer_funds and close_account. With no options: stdio, an embedded SQLite "
    "ledger in your user data directory (created with demo accounts on first use), and the shipped policy. "
    "A ledger named with --db must exist: create it with `bankgate-mcp admin init --db URL` or serve --create."
)


def _database_option(parser: argparse.ArgumentParser) -> None:
    """The database, and the key that signs its audit records (whatever opens the one may write the other)."""
    parser.add_argument("--db", dest="db_url", help="sqlite:///path or postgresql://... (BANKGATE_DB_URL)")
    parser.add_argument(
        "--audit-key-file", type=Path, help="audit signing key, shared by replicas (BANKGATE_AUDIT_KEY_FILE)"
    )


def _seed_options(parser: argparse.ArgumentParser) -> None:
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument(
        "--seed-demo",
        dest="seed_demo",
        action="store_true",
        default=None,
        help="put the demo accounts ACC-001..ACC-003 (with invented money) in an empty ledger (BANKGATE_SEED_DEMO)",
    )
    seed.add_argument(
        "--no-seed", dest="seed_demo", action="store_false", default=None, help="never create the demo accounts"
    )


def _version() -> str:
    try:
        return version("bankgate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, help="policy TOML file (BANKGATE_POLICY); default: shipped policy")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if "--debug" in unknown:  # also accepted after the command, where people type it
        unknown.remove("--debug")
        args.debug = True
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from pydantic import ValidationError

    from mcp_server.settings import Settings
    from mcp_server.storage.database import DatabaseUnreachable
    from policy.results import Refusal

    run: Callable[[Settings, argparse.Namespace], int | None] = args.run
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    configured = False
    try:
        try:
            settings = Settings(**overrides)
        except UnicodeDecodeError:  # only .env is read as text here (variables with such bytes are named)
            raise ValueError(".env: not UTF-8 text; save it as UTF-8") from None
        configured = True
        return run(settings, args) or 0
    except ValidationError as exc:
        # Past the settings, a model refusing what it was given is no setting's fault: a row of the database
        # edited behind bankgate's back, say; named by its model rather than as configuration.
        what = f"{exc.title} cannot be read" if configured else "configuration"
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            _fail(args, f"{what}: {field}: {error['msg']}")
    except DatabaseUnreachable as exc:  # names the server and what to check: nothing to add
        _fail(args, exc.message)
    except Refusal as refusal:  # LedgerError included: its message is written for people
        _fail(args, f"refused ({refusal.code}): {refusal.message}")
    except ValueError as exc:  # ConfigError, PolicyError, LedgerNotOpened, bad options: one line with a hint
        _fail(args, str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        hint = "" if args.debug else " (--debug shows the traceback)"
        _fail(args, f"unexpected {type(exc).__name__}: {exc}{hint}")
        return 1
    return 2


def _fail(args: argparse.Namespace, message: str) -> None:
    """One line on stderr (a line per problem of a policy file); the traceback too with --debug. Escaped
    (`free_text.shown`): a message may quote what was typed, a policy file's keys or what the database holds."""
    from mcp_server.ledger.free_text import shown

    if args.debug:
        import traceback

        traceback.print_exc()
    lines = "\n".join(shown(line) for line in message.split("\n"))
    print(f"bankgate-mcp: {lines}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
