"""The approval form's schema is rendered once, and every caller still gets a schema of its own."""

import json

from mcp.server.elicitation import render_elicitation_schema
from pydantic import BaseModel

from policy.mcp.form import ApprovalForm, ConfirmedApprovalForm


def test_each_render_is_a_separate_copy() -> None:
    first = render_elicitation_schema(ApprovalForm)
    first["properties"]["approve"]["type"] = "string"
    first["required"].append("note")
    second = render_elicitation_schema(ApprovalForm)
    assert second["properties"]["approve"]["type"] == "boolean"
    assert second["required"] == ["approve"]


def test_confirmed_form_keeps_its_own_schema() -> None:
    plain, confirmed = render_elicitation_schema(ApprovalForm), render_elicitation_schema(ConfirmedApprovalForm)
    assert plain["required"] == ["approve"]
    assert confirmed["required"] == ["approve", "confirmation"]
    assert "confirmation" in confirmed["properties"] and "confirmation" not in plain["properties"]


def test_a_render_is_pydantics_own_key_order_included() -> None:
    for form in (ApprovalForm, ConfirmedApprovalForm):
        for _ in range(2):  # the first renders and keeps it, the second is the kept one
            kept = form.model_json_schema()
            assert json.dumps(kept) == json.dumps(BaseModel.model_json_schema.__func__(form))  # type: ignore[attr-defined]
