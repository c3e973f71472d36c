"""A scripted elicitation responder for testing policies through a real MCP client.

    responder = ScriptedResponder(approve(note="ok").expecting("Transfer $1,500.00"), reject(), cancel())
    async with Client(server, elicitation_callback=responder) as client:   # or mode="legacy"
        await client.call_tool("transfer_funds", {...})
    responder.check()

It works as the `elicitation_callback` of `mcp.Client` on both protocol revisions: on
2025-11-25 it answers the server's `elicitation/create`; on 2026-07-28 `Client.call_tool`
routes each `InputRequiredResult` question through the same callback. Every question is
recorded, answered or not. Each question takes the next answer, in the order the questions arrive (calls
asking at once: start each after `await responder.asked(n)`); an answer bound with `expecting` refuses a
question that does not show its texts.

A question the script cannot answer as a real client would is refused, and `check()` fails the
test: a question beyond the script (on 2025-11-25 the server ends that call `denied`, as a deny rule
would), a question not showing what its answer `expecting` names, a scripted answer that does not fit the
form's schema (a client validates before it sends), a form answer to a desk link (a human opens the link or
not; no client approves it), an answer never used.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import anyio
import mcp_types as types
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from mcp.client import ClientRequestContext

from policy.question import requested_confirmation

TYPE_IT_BACK = object()
"""`approve(confirmation=TYPE_IT_BACK)` (the default) types back what the question asks for."""


@dataclass(frozen=True, repr=False)
class Answer:
    """One scripted reply; build it with `approve`, `reject`, `decline`, `cancel`, `invalid` or `silence`, and
    bind it to what its question must show with `expecting`."""

    action: str
    content: Mapping[str, Any] | None = None
    confirmation: object = None
    delay: float = 0.0
    fits: bool = True
    """Whether the content fits the question's form, as a client's would (`invalid` answers need not)."""
    expect: tuple[str, ...] = ()
    """Texts its question must show; a question showing another amount, account or owner is refused."""
    written: str = ""
    """How the script wrote it (`approve(note='ok')`), to name it in a failure."""

    def expecting(self, *texts: str) -> "Answer":
        """This answer, for a question whose message shows each of `texts` (e.g. `"Transfer $1,500.00"`,
        `"to ACC-002 (Bob Example)"`; a desk link's names its tool and `"/desk/approvals/"`, not the amount):
        without it, an answer scripted for one call answers whichever asks."""
        if not texts or not all(isinstance(text, str) and text for text in texts):
            raise ValueError("expecting(...) takes one or more non-empty texts the question must show")
        return replace(self, expect=self.expect + texts)

    def unshown(self, question: "Question") -> tuple[str, ...]:
        """What this answer expects that `question` does not show."""
        return tuple(text for text in self.expect if text not in question.message)

    def __repr__(self) -> str:
        bound = f".expecting({', '.join(map(repr, self.expect))})" if self.expect else ""
        return (self.written or f"Answer({self.action!r})") + bound

    def reply(self, question: str) -> types.ElicitResult:
        if self.action != "accept" or self.content is None:
            return types.ElicitResult(action=self.action)  # type: ignore[arg-type]
        content = dict(self.content)
        if self.confirmation is TYPE_IT_BACK:
            typed = requested_confirmation(question)
            if typed is not None:
                content["confirmation"] = typed
        elif self.confirmation is not None:
            content["confirmation"] = self.confirmation
        return types.ElicitResult(action="accept", content=content)

    def misfit(self, reply: types.ElicitResult, question: "Question") -> str | None:
        """Why no client could send `reply` to `question`; None when one could."""
        if reply.action != "accept":
            return None
        if question.url is not None:
            return "a form answer to a desk link, which no answer in the client approves (script decline or cancel)"
        if not self.fits:
            return None
        error = best_match(form_validator(json.dumps(question.schema, sort_keys=True)).iter_errors(reply.content or {}))
        if error is not None:
            return f"an answer that does not fit the form ({error.message}), so no client could send it"
        return None


@lru_cache(maxsize=256)
def form_validator(schema: str) -> Validator:
    """The compiled validator of a form's schema (JSON text), closed to fields it does not name, as a client's
    form is. Compiled once per schema, as the SDK does for output schemas: checking a schema against its
    metaschema costs ~60 validations, and a load's clients see the same few forms thousands of times."""
    closed = {**json.loads(schema), "additionalProperties": False}
    kind = validator_for(closed)
    kind.check_schema(closed)
    return kind(closed)


def approve(note: str | None = None, confirmation: object = TYPE_IT_BACK) -> Answer:
    """Accept with `approve: true` (typing back any requested confirmation unless told otherwise)."""
    content: dict[str, Any] = {"approve": True} | ({"note": note} if note else {})
    given = ({"note": note} if note is not None else {}) | (
        {} if confirmation is TYPE_IT_BACK else {"confirmation": confirmation}
    )
    return Answer("accept", content, confirmation, written=_written("approve", given))


def reject(note: str | None = None) -> Answer:
    """Accept the form but answer `approve: false`: a considered no (typing back any requested confirmation,
    a field the form requires whatever the answer)."""
    content = {"approve": False} | ({"note": note} if note else {})
    given = {"note": note} if note is not None else {}
    return Answer("accept", content, TYPE_IT_BACK, written=_written("reject", given))


def decline() -> Answer:
    return Answer("decline", written="decline()")


def cancel() -> Answer:
    return Answer("cancel", written="cancel()")


def invalid(content: Mapping[str, Any]) -> Answer:
    """Accept with arbitrary content (wrong types, extra fields, defaults only, ...)."""
    return Answer("accept", content, fits=False, written=f"invalid({dict(content)!r})")


def silence(seconds: float) -> Answer:
    """Say nothing for `seconds` (to run out the server's clock), then cancel."""
    return Answer("cancel", delay=seconds, written=f"silence({seconds!r})")


def _written(name: str, given: Mapping[str, object]) -> str:
    """A builder's call as a script writes it, with the arguments `given` (those not left to their defaults)."""
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in given.items())})"


@dataclass(frozen=True)
class Question:
    message: str
    schema: Mapping[str, Any]
    """The form's schema; empty for a desk link."""
    url: str | None = None
    """The desk link of a URL-mode question (a `desk` rule's), which the human opens or not."""


class ScriptedResponder:
    """Answers questions in order; a question it cannot answer as a client would is recorded and refused (`check`)."""

    def __init__(self, *answers: Answer) -> None:
        self.script = list(answers)
        self.questions: list[Question] = []
        self.refused: list[str] = []
        """Why each refused question was refused, with the question."""

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        if isinstance(params, types.ElicitRequestFormParams):
            question = Question(params.message, dict(params.requested_schema))
        else:
            question = Question(params.message, {}, params.url)
        self.questions.append(question)
        if not self.script:
            return self._refuse("no answer left", question)
        answer = self.script.pop(0)
        unshown = answer.unshown(question)
        if unshown:
            expected = " and ".join(map(repr, unshown))
            return self._refuse(f"{answer.written or answer.action} expected a question showing {expected}", question)
        if answer.delay:
            await anyio.sleep(answer.delay)
        reply = answer.reply(question.message)
        misfit = answer.misfit(reply, question)
        return reply if misfit is None else self._refuse(misfit, question)

    def _refuse(self, why: str, question: Question) -> types.ErrorData:
        """Record and refuse `question`, naming it in full: on 2026-07-28 the error ends the test at its call,
        before `check()` could."""
        asked = "\n".join(f"    {line}" for line in question.message.splitlines())
        self.refused.append(f"{why}; asked:\n{asked}")
        return types.ErrorData(
            code=types.INVALID_REQUEST, message=f"the scripted responder refused it: {self.refused[-1]}"
        )

    @property
    def unexpected(self) -> int:
        """How many questions were refused (see `check`)."""
        return len(self.refused)

    def check(self) -> None:
        """Fail (`AssertionError`) unless every question had a scripted answer a client could send, and every
        answer was used. Needed on 2025-11-25, where a refused question reaches the test only as the call's
        `denied`, which a test of a deny rule would take for the rule's."""
        unused = len(self.script)
        problems = [*self.refused]
        if unused:
            never = ", ".join(map(repr, self.script))
            problems.append(f"{unused} answer{' was' if unused == 1 else 's were'} never used: {never}")
        if problems:
            raise AssertionError("the scripted responder's script did not fit:\n" + "\n".join(problems))

    @property
    def remaining(self) -> int:
        return len(self.script)

    async def asked(self, count: int = 1, *, within: float = 20.0) -> Question:
        """Wait until `count` questions have arrived (a call waiting inline on its human, in another task),
        at most `within` seconds (then `TimeoutError`); the `count`th, however many arrived since."""
        if count < 1:
            raise ValueError("asked(count): count is the question's number, 1 for the first")
        with anyio.fail_after(within):
            while len(self.questions) < count:
                await anyio.sleep(0.02)
        return self.questions[count - 1]
