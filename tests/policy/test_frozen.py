"""`evolve` is `dataclasses.replace` for the gate's frozen dataclasses, at a fraction of the calls."""

from dataclasses import fields, replace

import pytest

from policy.frozen import evolve
from policy.results import GateResult, Status
from policy.store import Approval

APPROVAL = Approval("APR-0123456789", "b" * 64, "transfer_funds", {"amount": "5.00"}, "alice", "v1", "Q?", 1.0, 2.0)


@pytest.mark.parametrize(
    ("obj", "changes"),
    [
        (GateResult(Status.EXECUTED, "Done."), {"approval_ref": "APR-0123456789"}),
        (APPROVAL, {"status": "executed", "note": "ok", "outcome": {"status": "executed"}}),
    ],
)
def test_equals_replace(obj: object, changes: dict[str, object]) -> None:
    evolved, replaced = evolve(obj, **changes), replace(obj, **changes)  # type: ignore[type-var]
    assert evolved == replaced and type(evolved) is type(replaced) and evolved is not obj
    assert vars(evolved) == vars(replaced)


def test_the_original_is_unchanged_and_a_cached_property_is_not_carried_over() -> None:
    assert APPROVAL.question_sha256  # cached on the original
    changed = evolve(APPROVAL, question="Another question?")
    assert APPROVAL.question == "Q?" and changed.question_sha256 != APPROVAL.question_sha256
    assert changed.question_sha256 == replace(APPROVAL, question="Another question?").question_sha256


def test_a_name_that_is_not_a_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no field 'question_sha256'"):
        evolve(APPROVAL, question_sha256="x")


@pytest.mark.parametrize("cls", [GateResult, Approval])
def test_the_classes_it_is_used_on_only_store_their_fields(cls: type) -> None:
    """What makes `evolve` equal to `replace` for them: nothing runs in `__init__` beyond storing fields."""
    assert not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
    assert all(f.init for f in fields(cls))
