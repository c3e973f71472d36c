"""`policy explain`: the policy's decision and the ledger's pre-checks, as two separate findings.

An author asking "what does my policy say about a 70,000.00 transfer?" must not be answered
"insufficient funds": the policy is judged on the facts even when the ledger would refuse the
call first, and hypothetical facts (a balance, today's total) stand in for a funded account.
Nothing is written: the ledger is opened as the read-only commands open it (nothing migrated, no audit
signing key read or made: an author needs none of the servers' key), and the facts are read in one
read transaction.
An account the policy's `[accounts] visible` hides from the caller is the exception: the server answers
such a call as one naming a missing account before any rule runs, so no rule's decision is shown.
"""

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sqlalchemy import Connection

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import ErrorCode
from mcp_server.ledger.money import MAX_BALANCE_MINOR, format_amount, minor_units, parse_amount, plain_decimal
from mcp_server.settings import Settings
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import TOOL_ARGUMENTS, ledger_actions
from mcp_server.tools.close import close_account
from mcp_server.tools.common import account_facts, with_credentials
from policy.action import Call, Inspection
from policy.decision import Decision
from policy.facts import ACCOUNT_ARGUMENTS, AccountFacts, CallFacts
from policy.gate import Gate
from policy.loader import load_policy
from policy.results import Refusal
from policy.store import GateTx


@dataclass(frozen=True)
class Explanation:
    decision: Decision | None
    """The policy's finding; None when it cannot judge the call (`unjudged`), or it is `hidden`."""
    facts: CallFacts | None
    precheck: Refusal | None
    """The ledger's finding on the real state: None when the call could run now."""
    effect: tuple[str, ...]
    hidden: str | None = None
    """The account `[accounts] visible` hides from the caller: no rule judges the call."""
    unjudged: str = ""
    """Why no rule can judge a call the ledger refuses: an account that does not exist, an amount its currency
    cannot hold."""


def judge(settings: Settings, opened: Callable[[], Database]) -> tuple[Gate, Ledger]:
    """The gate of `settings`' policy over the ledger `opened` gives (opened after the policy loads: a bad one
    touches no ledger), to judge calls and never act: no audit writer's key is ever loaded, as nothing is signed."""
    policy = load_policy(settings.policy, catalog=TOOL_ARGUMENTS)
    db = opened()
    ledger = Ledger(db, max_amount_minor=settings.max_amount_minor)
    return Gate(policy, SqlGateStore(db), ledger_actions(ledger, policy)), ledger


def explain(
    gate: Gate, ledger: Ledger, call: Call, *, balances: Mapping[str, str] | None = None, moved_today: str | None = None
) -> Explanation:
    """Judge `call` by the policy (with hypothetical `balances` and `moved_today`, in major units) and
    by the ledger's pre-checks; changes nothing."""
    action = gate.actions[call.tool]

    def work(tx: GateTx[Connection]) -> Explanation:
        try:
            inspection, precheck = action.inspect(tx, call), None
        except Refusal as refusal:
            inspection, precheck = None, refusal
        if inspection is None:
            found = _accounts_only(ledger, tx, call)
            if found is None:
                return Explanation(None, None, precheck, (), unjudged="the call names an account that does not exist")
            hidden = _hidden(call, precheck)  # before the amount: the server reads none of a hidden account's
            if hidden is not None:
                return Explanation(None, None, precheck, (), hidden=hidden)
            try:
                inspection = _facts_only(call, *found)
            except Refusal as amount:  # the ledger refused something else first (two currencies, say)
                return Explanation(None, None, precheck, (), unjudged=amount.message)
        facts = _pretend(call, gate.facts(tx, call, inspection), balances or {}, moved_today)
        effect = () if precheck is not None else inspection.effect
        return Explanation(gate.policy.decide(facts), facts, precheck, effect)

    return gate.store.transaction(work, write=False)


def _accounts_only(
    ledger: Ledger, tx: GateTx[Connection], call: Call
) -> tuple[dict[str, AccountFacts | None], tuple[str, ...]] | None:
    """The accounts of a call the ledger refuses (e.g. for want of funds) as they are, with what the caller
    holds on them, as a tool reads them, and the caller's roles; None if an account it names does not exist."""
    accounts: dict[str, AccountFacts | None] = {}
    roles: tuple[str, ...] = ()
    for role, argument in ACCOUNT_ARGUMENTS.items():
        account_id = call.arguments.get(argument)
        if account_id is None:
            continue
        try:
            account, held = ledger.held_account_in(tx.ledger, account_id, call.principal, argument)
        except Refusal:
            return None
        held = with_credentials(held, call)
        accounts[role], roles = account_facts(account, held), held.roles
    return accounts, roles


def _facts_only(call: Call, accounts: dict[str, AccountFacts | None], roles: tuple[str, ...]) -> Inspection:
    """What the policy sees of a call the ledger refuses: its accounts (`_accounts_only`) and its amount."""
    first = next((a for a in accounts.values() if a is not None), None)
    currency = first.currency if first is not None else "USD"
    amount = call.arguments.get("amount")
    # No ceiling here: an amount over the ledger's limit is the pre-check's finding, the policy still judges it.
    try:
        amount_minor = 0 if amount is None else parse_amount(amount, currency, ceiling_minor=sys.maxsize)
    except Refusal as refusal:
        why = f"{amount} is no amount in {currency}: {refusal.message.rstrip('.')}"
        raise Refusal(refusal.code, why, "amount") from None
    return Inspection((), accounts, currency, minor_units(currency), amount_minor, roles)


def _hidden(call: Call, precheck: Refusal | None) -> str | None:
    """The account refused as missing although it exists (`_accounts_only` found every account the call names):
    the one the policy hides from the caller."""
    if precheck is None or precheck.code != ErrorCode.UNKNOWN_ACCOUNT or precheck.field is None:
        return None
    account = call.arguments.get(precheck.field)
    return account if isinstance(account, str) else None


def _pretend(call: Call, facts: CallFacts, balances: Mapping[str, str], moved_today: str | None) -> CallFacts:
    """`facts` with the hypothetical balances and daily total in place of the ledger's; a close's amount is
    the balance it sweeps (as `CloseAction.inspect` sets it), so the hypothetical one if given."""
    unknown = set(balances) - {a.id for a in facts.accounts.values() if a is not None}
    if unknown:
        raise ValueError(f"--balance names {', '.join(sorted(unknown))}, which this call does not involve")
    accounts = {
        role: replace(a, balance_minor=_minor(balances[a.id], a.currency, "--balance"))
        if a is not None and a.id in balances
        else a
        for role, a in facts.accounts.items()
    }
    moved = facts.moved_today_minor if moved_today is None else _minor(moved_today, facts.currency, "--moved-today")
    swept = accounts.get("account") if call.tool == close_account.__name__ else None
    amount = swept.balance_minor if swept is not None else facts.amount_minor
    return replace(facts, accounts=accounts, amount_minor=amount, moved_today_minor=moved)


def _minor(amount: str, currency: str, option: str) -> int:
    """A hypothetical amount in minor units: zero or more, written as amounts are (`money.plain_decimal`: no
    exponent, sign, separator or non-ASCII digit), at most the currency's decimal places and what a balance holds."""
    value = plain_decimal(amount)
    if value is None:
        raise ValueError(
            f"{option}: the amount is not a number written as a plain decimal, zero or more (e.g. 100000 or 1234.56)"
        )
    exponent = minor_units(currency)
    if -int(value.as_tuple().exponent) > exponent:
        raise ValueError(f"{option}: the amount must be zero or more with at most {exponent} decimal places")
    minor = int(value.scaleb(exponent))  # exact at most the bound; a larger value, rounded to 28 digits, stays above
    if minor > MAX_BALANCE_MINOR:
        raise ValueError(f"{option}: the amount must be at most {format_amount(MAX_BALANCE_MINOR, currency)}")
    return minor
