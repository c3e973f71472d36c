"""The MCP elicitation form of an approval, and how an answer to it becomes a `Verdict`.

The form's schema is strict (a required boolean with no default, so a client that
auto-fills defaults approves nothing), but its model accepts any content: a malformed
answer must become a recorded rejection, not an SDK error that skips the audit.
"""

import marshal
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from mcp.server.mcpserver import AcceptedElicitation, CancelledElicitation, DeclinedElicitation
from pydantic import BaseModel, ConfigDict, WithJsonSchema
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from policy.verdict import Verdict, VerdictKind

NOTE_MAX = 500


def _requires(*fields: str) -> Callable[[dict[str, Any]], None]:
    def shape(schema: dict[str, Any]) -> None:
        schema["required"] = list(fields)
        schema.pop("additionalProperties", None)

    return shape


class ApprovalForm(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_requires("approve"))
    _rendered: ClassVar[dict[tuple[Any, ...], bytes]] = {}

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        **options: Any,
    ) -> dict[str, Any]:
        """Rendered once per form and generator: the SDK renders the form on every round (and
        `policy.mcp.asked` once more per question), and generating it costs more than the rest
        of the question. Each caller gets its own copy, as from pydantic, to change as it likes:
        unmarshalled from the rendering kept as bytes (plain dicts, lists, strings and booleans), one
        C call where `json.loads` takes a dozen and copying the dicts dozens."""
        key = (cls, by_alias, ref_template, schema_generator, mode, tuple(sorted(options.items())) if options else ())
        if key not in cls._rendered:
            schema = super().model_json_schema(by_alias, ref_template, schema_generator, mode, **options)
            cls._rendered[key] = marshal.dumps(schema)
        rendered: dict[str, Any] = marshal.loads(cls._rendered[key])
        return rendered

    approve: Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "boolean",
                "title": "Approve",
                "description": "Yes runs exactly the action described above; no rejects it.",
            }
        ),
    ] = None
    note: Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "string",
                "title": "Note",
                "description": "Optional, kept in the audit log.",
                "maxLength": NOTE_MAX,
            }
        ),
    ] = None


class ConfirmedApprovalForm(ApprovalForm):
    """For irreversible actions: the approver also types back what the question names."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_requires("approve", "confirmation"))

    confirmation: Annotated[
        Any,
        WithJsonSchema(
            {"type": "string", "title": "Confirmation", "description": "Type the value the question asks for."}
        ),
    ] = None


def read_answer(outcome: object, confirmation: str | None) -> Verdict:
    """Turn the elicitation outcome into a verdict; anything but a clean yes is not a yes."""
    if isinstance(outcome, AcceptedElicitation) and isinstance(outcome.data, Verdict):
        outcome = outcome.data  # a resolver's own verdict (legacy path), wrapped by the SDK
    if isinstance(outcome, Verdict):
        return outcome
    if isinstance(outcome, DeclinedElicitation):
        return Verdict(VerdictKind.REJECT)
    if isinstance(outcome, CancelledElicitation):
        return Verdict(VerdictKind.CANCEL)
    if not isinstance(outcome, AcceptedElicitation) or not isinstance(outcome.data, ApprovalForm):
        return Verdict(VerdictKind.REJECT, "The answer was not an approval form.")
    return _read_form(outcome.data.model_dump(), confirmation)


def _read_form(content: Mapping[str, Any], confirmation: str | None) -> Verdict:
    allowed = {"approve", "note"} | ({"confirmation"} if confirmation is not None else set())
    if any(k not in allowed and v is not None for k, v in content.items()):
        # Named by the form's fields, never by the ones sent: the client chose those names, and the reason is
        # relayed to the model and kept in the audit log.
        return Verdict(
            VerdictKind.REJECT, f"The answer had fields the form does not; it takes only {', '.join(sorted(allowed))}."
        )
    note = content.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        return Verdict(VerdictKind.REJECT, f"The note must be text of at most {NOTE_MAX} characters.")
    approve = content.get("approve")
    if approve is not True and approve is not False:
        return Verdict(VerdictKind.REJECT, "The answer did not say yes or no to 'approve'.", note)
    if approve is False:
        return Verdict(VerdictKind.REJECT, note=note)
    if confirmation is not None and content.get("confirmation") != confirmation:
        return Verdict(VerdictKind.REJECT, "The typed confirmation did not match.", note)
    return Verdict(VerdictKind.APPROVE, "The operator approved.", note)
