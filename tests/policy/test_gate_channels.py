"""Channels on an in-memory store: where the gate asks (form or desk), and how a desk decision is
consumed: once, only for the call it was asked for, only before the deadline."""

from dataclasses import replace

import pytest

from policy.action import Call
from policy.channel import Channel
from policy.gate import Gate
from policy.results import Refusal, Status
from policy.testing.memory_store import MemoryGateStore
from policy.verdict import Verdict, VerdictKind
from tests.policy.bank import POLICY, TTL, bank, sweep, transfer
from tests.support import Clock

_LARGE = 'reason = "Above 100.00 needs approval."'
DESK_POLICY = POLICY.replace(_LARGE, _LARGE + '\nchannel = "desk"')
FORM_POLICY = POLICY.replace(_LARGE, _LARGE + '\nchannel = "form"')


@pytest.mark.parametrize(
    ("text", "form", "desk", "channel"),
    [
        (POLICY, True, True, Channel.FORM),  # any: the form where the client can show one
        (POLICY, False, True, Channel.DESK),  # any: else the desk
        (DESK_POLICY, True, True, Channel.DESK),  # desk: even from a form client
        (FORM_POLICY, True, True, Channel.FORM),
    ],
    ids=["any-form-client", "any-no-form", "desk-form-client", "form"],
)
def test_the_rule_and_the_client_choose_the_channel(text: str, form: bool, desk: bool, channel: Channel) -> None:
    gate, _, _ = bank(text=text)
    opening = gate.open(transfer(12_000), human_reachable=form, desk=desk)
    assert opening.approval is not None and opening.channel is channel


@pytest.mark.parametrize(
    ("text", "form", "desk"),
    [(FORM_POLICY, False, True), (DESK_POLICY, True, False), (POLICY, False, False)],
    ids=["form-rule-no-form", "desk-rule-no-desk", "nothing"],
)
def test_no_allowed_channel_denies_and_runs_nothing(text: str, form: bool, desk: bool) -> None:
    gate, store, _ = bank(text=text)
    opening = gate.open(transfer(12_000), human_reachable=form, desk=desk)
    assert opening.final is not None and opening.final.status is Status.DENIED
    assert store.ledger.balances["B"] == 0 and not store.approvals


def asked_at_desk(text: str = POLICY) -> tuple[Gate, MemoryGateStore, Clock, str]:
    gate, store, clock = bank(text=text)
    opening = gate.open(transfer(12_000), human_reachable=False, desk=True)
    assert opening.approval is not None
    return gate, store, clock, opening.approval.ref


def test_a_desk_approval_is_pending_until_signed_then_runs_once() -> None:
    gate, store, clock, ref = asked_at_desk()
    early = gate.resume(transfer(12_000), ref)
    assert early.final is None and early.approval is not None and early.approval.ref == ref
    assert early.channel is Channel.DESK and not gate.desk_decided(ref)

    store.sign_at_desk(ref, "dora", approved=True, at=clock.now, note="checked")
    assert gate.desk_decided(ref)
    done = gate.resume(transfer(12_000), ref).final
    again = gate.resume(transfer(12_000), ref).final

    assert done is not None and done.status is Status.EXECUTED and done.approval_ref == ref
    assert again == done  # the stored outcome: nothing runs twice
    assert store.ledger.balances["B"] == 12_000
    assert store.events(ref) == ["requested", "approved", "executed"]
    approved = next(e for e in store.audit if e.event == "approved")
    assert "approver:dora" in approved.reason and approved.note == "checked"


def test_a_desk_rejection_settles_as_rejected() -> None:
    gate, store, clock, ref = asked_at_desk()
    store.sign_at_desk(ref, "dora", approved=False, at=clock.now, note="no")
    result = gate.resume(transfer(12_000), ref).final
    assert result is not None and result.status is Status.REJECTED
    assert "approver:dora" in result.message and store.ledger.balances["B"] == 0


def test_no_decision_by_the_deadline_expires() -> None:
    gate, store, clock, ref = asked_at_desk()
    clock.now += TTL
    result = gate.resume(transfer(12_000), ref).final
    assert result is not None and result.status is Status.EXPIRED
    store.sign_at_desk(ref, "dora", approved=True, at=clock.now)  # too late: the approval is settled
    assert gate.resume(transfer(12_000), ref).final == result and store.ledger.balances["B"] == 0


def test_a_decision_signed_in_time_counts_when_collected_later() -> None:
    gate, store, clock, ref = asked_at_desk()
    store.sign_at_desk(ref, "dora", approved=True, at=clock.now + TTL - 1)
    clock.now += TTL + 5
    result = gate.resume(transfer(12_000), ref).final
    assert result is not None and result.status is Status.EXECUTED


@pytest.mark.parametrize(
    "other",
    [
        transfer(13_000),
        transfer(12_000, principal="mallory"),
        sweep(),
        transfer(12_000, key="alice\x1fother"),
        Call("transfer", {"source": "A", "target": "B", "amount": 12_000}, "alice", roles=("teller",)),
    ],
    ids=["other-arguments", "other-principal", "other-tool", "other-key", "other-roles"],
)
def test_a_ref_presented_for_another_call_is_refused_and_changes_nothing(other: Call) -> None:
    gate, store, clock, ref = asked_at_desk()
    store.sign_at_desk(ref, "dora", approved=True, at=clock.now)
    with pytest.raises(Refusal) as refused:
        gate.resume(other, ref)
    assert refused.value.code == "approval_mismatch" and refused.value.field == "approval_ref"
    assert store.approvals[ref].status == "pending" and store.ledger.balances["B"] == 0
    assert store.events(ref) == ["requested"]


def test_an_unknown_ref_is_refused() -> None:
    gate, _, _, _ = asked_at_desk()
    with pytest.raises(Refusal) as refused:
        gate.resume(transfer(12_000), "APR-0000000000")
    assert refused.value.code == "approval_mismatch"


def test_a_signoff_not_over_the_stored_approval_is_ignored() -> None:
    gate, store, clock, ref = asked_at_desk()
    signed = store.sign_at_desk(ref, "dora", approved=True, at=clock.now)
    store.desk[ref] = replace(signed, binding="another binding")
    opening = gate.resume(transfer(12_000), ref)
    assert opening.final is None and store.ledger.balances["B"] == 0


def test_a_desk_rule_is_not_satisfied_by_a_form_answer() -> None:
    gate, store, _, _ = asked_at_desk(DESK_POLICY)
    opening = gate.open(transfer(12_000), human_reachable=True, desk=True)
    assert opening.approval is not None and opening.channel is Channel.DESK
    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE, "a client said yes"))
    assert result.status is Status.DENIED and "approval desk" in result.message
    assert store.ledger.balances["B"] == 0
