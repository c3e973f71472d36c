"""The non-serving commands of `bankgate-mcp`: policy, audit and ledger administration."""

import json
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from mcp_server.app import open_state
from mcp_server.audit import reader
from mcp_server.audit.keys import key_file, load_keyring, load_public_keyring, load_signer, public_key_text
from mcp_server.audit.sequencer import Sequencer, checked_writer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.approvals import STATUSES, approvals
from mcp_server.cli.explain import explain, judge
from mcp_server.desk.reverify import reverify_decisions
from mcp_server.ledger.books import Ledger
from mcp_server.ledger.entitlements import EntitlementAdmin, grants, stored_principal
from mcp_server.ledger.free_text import shown
from mcp_server.ledger.money import format_amount
from mcp_server.settings import Settings
from mcp_server.storage.database import Database, redacted_url
from mcp_server.tools import TOOL_ARGUMENTS
from policy.action import Call
from policy.audit import SignedHead
from policy.channel import Channel
from policy.facts import ROLES, CallFacts
from policy.loader import load_policy
from policy.outcome import Outcome
from policy.results import Refusal


def policy_check(file: Path) -> int:
    policy = load_policy(file, catalog=TOOL_ARGUMENTS)
    print(f"{file}: OK (version {policy.version})")
    # Conditions escaped (`shown`): a CEL string may hold a control character, and a condition span lines.
    seen = f"only where {shown(policy.visible.source)}" if policy.visible else "every account, to every caller"
    print(f"  accounts visible: {seen}")
    for name, tool in policy.tools.items():
        rules = ", ".join(f"{r.name} -> {_effect(r.outcome, r.channel or tool.channel)}" for r in tool.rules)
        confirm = f"; approver types back {tool.confirm}" if tool.confirm else ""
        print(f"  {name}: default {_effect(tool.default, tool.channel)}; {rules or 'no rules'}{confirm}")
    for warning in policy.warnings:  # legal, so the exit status stays 0: each says what to write instead
        print(f"warning: {shown(warning)}")
    return 0


def policy_explain(
    settings: Settings,
    tool: str,
    raw_args: str,
    *,
    balances: Sequence[str] = (),
    moved_today: str | None = None,
    roles: Sequence[str] = (),
) -> int:
    try:
        arguments = json.loads(raw_args)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"--args is not valid JSON: {exc}") from None
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"--role: unknown role '{shown(role)}'; the roles are {', '.join(ROLES)}")
    gate, ledger = judge(settings, lambda: existing(settings))
    action = gate.actions.get(tool)
    if action is None:
        raise Refusal("unknown_tool", f"no tool named '{tool}' (tools: {', '.join(sorted(gate.actions))})")
    call = Call(tool, action.canonical(arguments), settings.principal, roles=tuple(sorted(set(roles))))
    found = explain(gate, ledger, call, balances=_pairs(balances, "--balance"), moved_today=moved_today)
    print(f"policy: {gate.policy.source} ({gate.policy.version})")
    if found.hidden is not None:
        print(
            f"policy decision: hidden: [accounts] visible hides {found.hidden} from {call.principal}, so the call "
            "is answered as one naming a missing account, and no rule judges it"
        )
    elif found.decision is None:
        print(f"policy decision: not judged ({shown(found.unjudged)})")
    else:
        print(f"policy decision: {_effect(found.decision.outcome, found.decision.channel)}")
        print(f"  reason: {found.decision.reason}")
        if found.decision.failure is not None:  # it may quote a fact: an owner's name, as the database holds it
            print(f"  could not evaluate: {shown(found.decision.failure)}")
        print(f"  matched rules: {', '.join(found.decision.matched_rules) or '(none: the tool default applies)'}")
    if found.facts is not None and (balances or moved_today is not None):
        print("  judged on hypothetical facts: " + _hypotheses(found.facts, balances, moved_today))
    if found.precheck is None:
        print("ledger pre-checks: pass")
        print("  effect:")
        for line in found.effect:
            print(f"    {shown(line)}")  # owners' names as the database holds them, which may have been edited
    else:
        print(f"ledger pre-checks: would refuse ({found.precheck.code}): {shown(found.precheck.message)}")
    print("(nothing was executed)")
    return 0


def _effect(outcome: Outcome, channel: Channel | None) -> str:
    """An outcome, with the channel its approval goes through when it needs one: `require_approval (desk)`."""
    return f"{outcome.value} ({channel.value})" if outcome is Outcome.REQUIRE_APPROVAL and channel else outcome.value


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    """'ID=AMOUNT' options as a mapping."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{option} expects ACCOUNT=AMOUNT, e.g. {option} ACC-001=100000")
        pairs[key.strip()] = value.strip()
    return pairs


def _hypotheses(facts: CallFacts, balances: Sequence[str], moved_today: str | None) -> str:
    facts_shown = [f"balance {item}" for item in balances]
    if moved_today is not None:
        facts_shown.append(f"moved today {format_amount(facts.moved_today_minor, facts.currency)}")
    return ", ".join(facts_shown)


def admin_init(settings: Settings) -> int:
    """The explicit step that creates a ledger (or upgrades one), and puts demo money in it only when asked."""
    state = open_state(settings, create=True, seed=bool(settings.seed_demo))
    accounts = state.ledger.accounts()
    print(f"ledger ready at {redacted_url(settings.db_url)}: {len(accounts)} accounts")
    return 0


def existing(settings: Settings) -> Database:
    """The ledger `settings` name, never created nor migrated (only `admin init` and `serve` do: a ledger behind
    this release is refused). An operator's newer release cannot move the ledger past the one its servers run, nor
    migrate it for a command it then refuses; reading needs no key, so it may watch with a role that may only read."""
    return Database.open(settings.db_url, create=False, migrate=False)


def audit_verify(settings: Settings, checkpoint_file: Path | None = None, public_keys: Path | None = None) -> int:
    """With the private key file, records waiting for the sequencer are chained first; with only public keys
    nothing is written, and they are reported as pending."""
    db = existing(settings)  # a missing ledger is the first thing to say: it needs no key to find out
    path = key_file(settings.audit_key_file)
    keys = load_public_keyring(public_keys) if public_keys else load_keyring(path)
    checkpoint = _read_checkpoint(checkpoint_file) if checkpoint_file else None
    sequencer = None if public_keys else Sequencer(db, AuditWriter(path))
    found = reader.verify(db, keys, checkpoint, sequencer=sequencer)
    try:  # the approval desk's passkey signatures, re-verified offline
        findings = found.findings + reverify_decisions(db)
    except DBAPIError as exc:
        findings = [*found.findings, reader.database_finding("re-verifying the desk's decisions", exc)]
    pending = f", and {found.pending} records not chained yet (pending)" if found.pending else ""
    if not findings:
        held = f"; it holds the checkpoint's record {checkpoint.seq}" if checkpoint else ""
        print(f"audit chain intact: {found.records} records{pending}{held}")
        return 0
    print(f"audit chain BROKEN ({found.records} records read{pending}):")
    for finding in findings:
        print(f"  {shown(str(finding))}")  # it may name what the database holds: a forged record's id
    if all(finding.legacy for finding in findings):
        print(
            "hint: all of this is what a ledger from before signed audit lacks; if these are its old postings "
            "and records, a holder of the audit key vouches for them once with `bankgate-mcp audit adopt`"
        )
    return 1


def audit_adopt(settings: Settings) -> int:
    path = key_file(settings.audit_key_file)
    db = existing(settings)
    adoption = reader.adopt(db, _sequencer(db, path))
    if adoption is None:
        print("nothing to adopt: every ledger transaction has its audit record and a signature covers the chain")
        return 0
    old_records = (
        f", and records 1 to {adoption.unsigned_through} written before signing" if adoption.unsigned_through else ""
    )
    print(
        f"adopted in signed record {adoption.seq}: {len(adoption.transactions)} ledger transactions posted "
        f"without a record{old_records}"
    )
    for tx, posted in adoption.transactions:
        print(f"  {shown(tx)} ({posted.describe()})")  # the id is the database's: it may have been edited
    return 0


def audit_checkpoint(settings: Settings, out: Path | None) -> int:
    db = existing(settings)
    head = reader.checkpoint(db, _sequencer(db, key_file(settings.audit_key_file)))
    document = json.dumps(head.as_json(), indent=2) + "\n"
    if out is None:
        print(document, end="")
    else:
        try:
            out.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--out {out}: {exc.strerror}; name a file in an existing directory") from None
        print(f"checkpoint of record {head.seq} (hash {head.hash[:16]}…, key {head.key_id}) written to {out}")
    return 0


def _sequencer(db: Database, path: Path) -> Sequencer:
    """A sequencer signing with the existing key: a person holding it vouches, never a key made up on the spot."""
    load_signer(path, create=False)
    return Sequencer(db, AuditWriter(path))


def audit_public_key(settings: Settings) -> int:
    print(public_key_text(key_file(settings.audit_key_file)), end="")
    return 0


def _read_checkpoint(file: Path) -> SignedHead:
    try:
        return SignedHead.from_json(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError) as exc:
        raise ValueError(
            f"checkpoint {file}: not a checkpoint written by 'audit checkpoint' ({type(exc).__name__})"
        ) from None
    except ValueError as exc:
        raise ValueError(f"checkpoint {file}: {exc}") from None


MAX_LISTED = 1_000_000
"""The most rows `audit tail -n` or `admin approvals --limit` lists (a SQL LIMIT past 64 bits is an overflow, a
negative one no limit)."""


def _bounded(limit: int, option: str) -> int:
    if not 0 <= limit <= MAX_LISTED:
        raise ValueError(f"{option} must be a whole number from 0 to {MAX_LISTED:,}")
    return limit


def audit_tail(settings: Settings, limit: int) -> int:
    for line in reader.tail(existing(settings), _bounded(limit, "-n")):
        print(line.render())
    return 0


def _ledger(settings: Settings) -> Ledger:
    db = existing(settings)
    return Ledger(db, max_amount_minor=settings.max_amount_minor, audit=checked_writer(db, settings.audit_key_file))


def admin_accounts(settings: Settings) -> int:
    for account in Ledger(existing(settings)).accounts():
        balance = format_amount(account.balance_minor, account.currency)
        print(f"{shown(account.id):<10} {account.status:<6} {balance:>16}  {shown(account.owner)}")
    return 0


def admin_create(settings: Settings, owner: str, currency: str, account_id: str | None) -> int:
    account = _ledger(settings).create_account(owner, currency, account_id)
    print(f"created {account.id} for {account.owner} ({account.currency})")
    return 0


def admin_deposit(settings: Settings, account_id: str, amount: str) -> int:
    receipt = _ledger(settings).deposit(account_id, amount)
    balance = format_amount(receipt.balance_after_minor, receipt.currency)
    print(f"deposited {format_amount(receipt.amount_minor, receipt.currency)} to {account_id}; balance {balance}")
    return 0


def admin_history(settings: Settings, account_id: str) -> int:
    for line in Ledger(existing(settings)).history(account_id):
        amount = format_amount(line.amount_minor, line.currency)
        print(
            f"{line.created_at:%Y-%m-%d %H:%M:%S}  {line.kind:<11} {amount:>14}  {shown(line.counterparty)}  "
            f"{shown(line.memo or '')}"
        )
    return 0


def admin_invariants(settings: Settings) -> int:
    problems = Ledger(existing(settings)).check_invariants()
    for problem in problems:
        print(shown(problem))  # it names what the database holds, which may have been edited
    print("ledger invariants hold" if not problems else f"{len(problems)} invariant violations")
    return 1 if problems else 0


def _entitlements(settings: Settings, by: str | None) -> EntitlementAdmin:
    db = existing(settings)
    return EntitlementAdmin(db, by, checked_writer(db, settings.audit_key_file))


def admin_grant(settings: Settings, principal: str, relation: str, account_id: str, by: str | None) -> int:
    if _entitlements(settings, by).grant(principal, relation, account_id):
        print(f"granted: {principal} is {relation} of {account_id}")
    else:
        print(f"unchanged: {principal} already is {relation} of {account_id}")
    return 0


def admin_revoke(settings: Settings, principal: str, relation: str, account_id: str, by: str | None) -> int:
    if _entitlements(settings, by).revoke(principal, relation, account_id):
        print(f"revoked: {principal} is no longer {relation} of {account_id}")
        return 0
    raise Refusal("not_granted", f"{principal} is not {relation} of {account_id}; nothing was revoked.")


def admin_role_grant(settings: Settings, principal: str, role: str, by: str | None) -> int:
    if _entitlements(settings, by).grant_role(principal, role):
        print(f"granted: {principal} has the role {role}")
    else:
        print(f"unchanged: {principal} already has the role {role}")
    return 0


def admin_role_revoke(settings: Settings, principal: str, role: str, by: str | None) -> int:
    if _entitlements(settings, by).revoke_role(principal, role):
        print(f"revoked: {principal} no longer has the role {role}")
        return 0
    raise Refusal("not_granted", f"{principal} does not have the role {role}; nothing was revoked.")


def admin_grants(settings: Settings, principal: str | None, account_id: str | None) -> int:
    found = grants(existing(settings), principal, account_id)
    for grant in found:
        print(grant.render())
    if not found:
        print("no entitlements")
    return 0


def admin_approvals(
    settings: Settings, status: str, principal: str | None, tool: str | None, limit: int, as_json: bool
) -> int:
    """Read-only, like `audit verify --public-keys`: it writes nothing and migrates nothing (a ledger behind this
    release is refused), so it may watch a ledger servers are serving, with a role that may only read."""
    if status not in STATUSES:
        raise ValueError(f"--status must be one of {', '.join(STATUSES)}")
    if tool is not None and tool not in TOOL_ARGUMENTS:
        raise ValueError(f"--tool must be one of {', '.join(sorted(TOOL_ARGUMENTS))}")
    who = None if principal is None else stored_principal(principal, "--principal")
    db = existing(settings)
    found = approvals(db, status=status, principal=who, tool=tool, limit=_bounded(limit, "--limit"))
    now = time.time()
    for approval in found:
        print(json.dumps(approval.as_json(now), sort_keys=True) if as_json else approval.render(now))
    if not found and not as_json:
        print("no approvals")
    return 0
