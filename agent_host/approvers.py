"""Who answers the MCP server's approval questions: a person at the console, a script, or nobody.

The server asks through MCP elicitation; `ApprovalDesk` is the MCP client's elicitation
callback and hands each question to an `Approver`. The model never sees these questions:
they travel between the MCP server and this process only.

Scripted answers (`--approver scripted:FILE`) are one per line, used in order (blank lines and
`#` comments skipped), or a JSON list of the same strings::

    approve                      # yes; for a closure, types back the value the question asks for
    approve note="rent, March"   # yes, with a note for the audit log
    approve confirm=ACC-009      # yes, typing this confirmation instead (a wrong one is refused)
    reject note="not today"      # answers the form with approve = no
    decline                      # declines to answer the form
    cancel                       # dismisses the question

When the script runs out, every further question is declined.

**Desk approvals** (URL-mode elicitation) are not answered here: the server sends a link to its
approval desk, where an approver signs the decision with a passkey. An approver only shows the
link (never opening or prefetching it) and answers `accept`, which in URL mode means "the user was
shown the link". Then the call completes when the desk decides: on 2025-11-25 the server holds
the `tools/call` open and finishes it (with `notifications/elicitation/complete`); on 2026-07-28
it answers each retry with the same link until then, and the host retries every
`DESK_POLL_SECONDS` until the server settles or the deadline passes. Script lines are not used up
by desk questions.

A form carries no deadline on either protocol revision (`elicitation/create` and
`InputRequiredResult` hold a message and a form only); bankgate states one in the question's text
("Answer by: ... UTC"), which the desk reads. A question without that line is dated from the approval
timeout the host shares with the server it launches (`BANKGATE_APPROVAL_TIMEOUT`, 300 s by default)
and the moment the question arrived.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import anyio
import mcp_types
from mcp.client import ClientRequestContext
from rich.console import Console
from rich.text import Text

from agent_host.errors import ConfigurationError, Interrupted
from agent_host.mcp_link import DESK_POLL_SECONDS
from agent_host.terminal import TerminalConfirm, TerminalPrompt, discard_typeahead, interruptible, printable

Action = Literal["accept", "decline", "cancel"]

RECORDS_KEPT = 1000
"""Answers `ApprovalDesk.records` keeps, the latest: a report, where a web host answers questions for months."""
LINK_GRACE_SECONDS = 60.0
"""How long past its deadline a desk link is remembered (the server's clock may run behind the host's)."""
_CONFIRMATION = re.compile(r"^To approve, also type (.+) in the confirmation field\.$", re.MULTILINE)
"""What a question asks the approver to type back: the bank's own line, whole, since a quoted memo can
hold the same words within a line the bank begins; the value is the rest of that line, spaces and all (a
memo typed back). The host's own reading of the server's wording
(`policy.question` renders it), not an import: the host reaches the server over MCP only and imports
no server-side package; tests/host/test_wire_contract.py checks it reads what the server writes."""
_REFERENCE = re.compile(r"^Reference: (\S+)$", re.MULTILINE)
_DEADLINE = re.compile(r"^Answer by: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", re.MULTILINE)
"""The deadline the server states in its question (read like `_CONFIRMATION`)."""
_NO_DESK_WAIT = "no terminal: the host does not wait for the desk (deny approver)"


@dataclass(frozen=True)
class FormField:
    name: str
    title: str
    description: str
    required: bool


@dataclass(frozen=True)
class Question:
    """An approval question as the server put it: its text and the form to fill in."""

    message: str
    fields: tuple[FormField, ...]
    deadline: float | None = None
    """When the server stops waiting (epoch seconds), as far as the host can tell."""
    schema: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The form's JSON schema as sent (a web client renders and checks its answer against it)."""
    url: str | None = None
    """For a desk approval (URL mode): the link where an approver decides. Shown, never opened."""
    elicitation_id: str | None = None
    """Set when the server holds its `tools/call` open until the desk decides (2025-11-25)."""
    repeat: int = 0
    """How often the server asked for this same link before (2026-07-28 rounds while the desk has not decided)."""

    @classmethod
    def from_params(cls, params: mcp_types.ElicitRequestFormParams) -> Question:
        schema = params.requested_schema
        required = set(schema.get("required") or ())
        properties: Mapping[str, Any] = schema.get("properties") or {}
        fields = tuple(
            FormField(
                name,
                str(spec.get("title") or name),
                str(spec.get("description") or ""),
                name in required,
            )
            for name, spec in properties.items()
        )
        return cls(params.message, fields, schema=schema)

    @classmethod
    def from_url_params(cls, params: mcp_types.ElicitRequestURLParams) -> Question:
        return cls(params.message, (), url=params.url, elicitation_id=params.elicitation_id)

    @property
    def held(self) -> bool:
        return self.elicitation_id is not None

    @property
    def at_desk(self) -> bool:
        return self.url is not None

    @property
    def reference(self) -> str | None:
        """The approval's reference: the last segment of a desk link, else the question's "Reference:" line."""
        if self.url is not None:
            segment = urlsplit(self.url).path.rstrip("/").rpartition("/")[2]
            if segment:
                return segment
        match = _REFERENCE.search(self.message)
        return match.group(1) if match else None

    @property
    def stated_deadline(self) -> float | None:
        """The deadline the question states (epoch seconds), if it states one."""
        match = _DEADLINE.search(self.message)
        return datetime.fromisoformat(match.group(1) + "+00:00").timestamp() if match else None

    def seconds_left(self, clock: Callable[[], float] = time.time) -> float | None:
        return None if self.deadline is None else self.deadline - clock()

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    @property
    def confirmation_value(self) -> str | None:
        """What the question asks to be typed back ("To approve, also type ACC-003 in the confirmation field.")."""
        match = _CONFIRMATION.search(self.message)
        return match.group(1) if match else None


@dataclass(frozen=True)
class Answer:
    """An approver's answer; `approve` is the form's yes/no when the form is accepted."""

    action: Action
    approve: bool = False
    confirmation: str | None = None
    note: str | None = None
    reason: str = ""
    """Why this answer was given, when nobody typed it (shown to the user)."""
    interrupted: bool = False
    """The person pressed Ctrl-C: the question is cancelled and the host stops once the server has it."""
    desk: bool = False
    """An answer to a desk link: `accept` means only that the link was shown, the desk decides."""

    @property
    def label(self) -> str:
        if self.action == "accept" and self.desk:
            return "sent to the desk"
        if self.action == "accept":
            return "approved" if self.approve else "rejected"
        return "declined" if self.action == "decline" else "cancelled"

    def result(self, question: Question) -> mcp_types.ElicitResult:
        """The elicitation result, carrying only fields the form has: a strict form refuses any other."""
        if self.action != "accept" or question.at_desk:
            return mcp_types.ElicitResult(action=self.action)
        content: dict[str, str | int | float | bool | list[str] | None] = {"approve": self.approve}
        if question.has("confirmation") and self.confirmation is not None:
            content["confirmation"] = self.confirmation
        if question.has("note") and self.note:
            content["note"] = self.note
        return mcp_types.ElicitResult(action="accept", content=content)


class Approver(Protocol):
    """Answers approval questions; `name` tells the user who (or what) answered."""

    name: str

    async def answer(self, question: Question) -> Answer: ...


class ApprovalObserver(Protocol):
    """Shows questions and answers to the user (see `agent_host.display.Display`)."""

    def approval_asked(self, question: Question, approver: str) -> None: ...

    def approval_answered(self, question: Question, answer: Answer) -> None: ...

    def desk_decided(self, question: Question) -> None: ...


class DenyApprover:
    """Nobody to ask: the default without a terminal, so a headless host never approves.

    With it the host declares no elicitation capability, so the server itself denies (and audits)
    each call as one no human can approve; should a question reach it anyway, it declines.
    """

    name = "deny"

    async def answer(self, question: Question) -> Answer:
        if question.at_desk:
            return Answer("decline", reason=_NO_DESK_WAIT, desk=True)
        return Answer("decline", reason="no terminal to ask a human (deny approver)")


class ScriptedApprover:
    """Answers from a list, in order; declines once the list is used up."""

    name = "scripted"

    def __init__(self, answers: Sequence[Answer]) -> None:
        self._answers = list(answers)

    @classmethod
    def from_file(cls, path: Path) -> ScriptedApprover:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"Cannot read the approver script {path}: {error.strerror}.") from None
        return cls(parse_script(text, str(path)))

    async def answer(self, question: Question) -> Answer:
        if question.at_desk:
            return await wait_at_desk(question)
        if not self._answers:
            return Answer("decline", reason="the approver script has no answers left")
        scripted = self._answers.pop(0)
        if scripted.action == "accept" and scripted.approve and scripted.confirmation is None:
            scripted = replace(scripted, confirmation=question.confirmation_value)
        return scripted


def parse_script(text: str, source: str = "script") -> list[Answer]:
    """Answers from a script: one per line, or a JSON list of lines (format in the module docstring)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            lines = json.loads(stripped)
        except ValueError as error:
            raise ConfigurationError(f"{source}: not a valid JSON list ({error}).") from None
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise ConfigurationError(f"{source}: the JSON form must be a list of strings.")
    else:
        lines = text.splitlines()
    parsed = (_parse_line(line, f"{source}:{number}") for number, line in enumerate(lines, 1))
    return [answer for answer in parsed if answer is not None]


def _parse_line(line: str, where: str) -> Answer | None:
    """One answer, or `None` for a blank or comment line."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as error:
        raise ConfigurationError(f"{where}: {error}") from None
    if not words:
        return None
    word, *options = words
    settings = dict(option.partition("=")[::2] for option in options)
    unknown = set(settings) - {"note", "confirm"}
    if unknown or any("=" not in option for option in options):
        raise ConfigurationError(f"{where}: expected note=TEXT or confirm=VALUE after {word!r}, got {line!r}.")
    reason = f"scripted ({where})"
    note = settings.get("note")
    if word == "approve":
        return Answer("accept", True, settings.get("confirm"), note, reason)
    if word == "reject" and "confirm" not in settings:
        return Answer("accept", False, None, note, reason)
    if word in ("decline", "cancel") and not settings:
        return Answer("decline" if word == "decline" else "cancel", reason=reason)
    raise ConfigurationError(
        f"{where}: {line!r} is not an answer; use approve [note=...] [confirm=...], reject [note=...], "
        "decline or cancel."
    )


class ConsoleApprover:
    """Asks the person at the terminal: yes or no, the typed confirmation, and an optional note.

    A mistyped confirmation is asked again (an empty one rejects), and an answer given after the
    deadline says so: the server, not this prompt, decides that it came too late.
    """

    name = "console"

    def __init__(self, console: Console, clock: Callable[[], float] = time.time) -> None:
        self._console = console
        self._clock = clock

    async def answer(self, question: Question) -> Answer:
        """Blocks the event loop while the person answers (see `agent_host.terminal`); desk links are only shown."""
        if question.at_desk:
            return await wait_at_desk(question, self._clock)
        try:
            with interruptible():
                discard_typeahead()
                answer = self._ask(question)
        except EOFError:
            return Answer("cancel", reason="the terminal closed before an answer")
        except KeyboardInterrupt:
            return Answer("cancel", reason="interrupted with Ctrl-C", interrupted=True)
        left = question.seconds_left(self._clock)
        if left is not None and left <= 0:
            return replace(answer, reason="given after the deadline: the server will report the call expired")
        return answer

    def _ask(self, question: Question) -> Answer:
        console = self._console
        approve = TerminalConfirm.ask(f"Approve this action?{_time_left(question, self._clock)}", console=console)
        confirmation = None
        if approve and question.has("confirmation"):
            confirmation = self._confirmation(question.confirmation_value)
            approve = bool(confirmation)
        note = ""
        if question.has("note"):
            note_prompt = "Note for the audit log (optional)"
            note = TerminalPrompt.ask(note_prompt, console=console, default="", show_default=False)
        return Answer("accept", approve, confirmation or None, note or None)

    def _confirmation(self, wanted: str | None) -> str:
        """What the person typed back: exactly `wanted` (asked again until it is), or "" to reject.

        `wanted` is the server's text: shown as text (never rich markup), its control characters escaped."""
        shown = printable(wanted, lines=False) if wanted else None
        prompt = Text(f"Type {shown} to confirm (empty rejects)" if shown else "Confirmation (empty rejects)")
        while True:
            typed = TerminalPrompt.ask(prompt, console=self._console, default="", show_default=False).strip()
            if not typed or wanted is None or typed == wanted:
                return typed
            self._console.print(Text(f"That is not {shown}; type it exactly as shown."), highlight=False)


async def wait_at_desk(question: Question, clock: Callable[[], float] = time.time) -> Answer:
    """The answer to a desk link for an approver who can only show it (the display already did).

    The first time: `accept` (the link was shown). Each time the server asks again (2026-07-28,
    the desk has not decided yet): `accept` after `DESK_POLL_SECONDS`, so the host asks again at that
    pace, until the deadline passes; then `cancel`, and the server records how the approval ended.
    """
    if question.repeat == 0:
        return Answer("accept", reason="the link was shown; waiting for the desk to decide", desk=True)
    left = question.seconds_left(clock)
    if left is not None and left <= 0:
        return Answer("cancel", reason="the desk did not decide before the deadline", desk=True)
    await anyio.sleep(DESK_POLL_SECONDS if left is None else min(DESK_POLL_SECONDS, left))
    return Answer("accept", reason="still waiting for the desk", desk=True)


def _time_left(question: Question, clock: Callable[[], float]) -> str:
    left = question.seconds_left(clock)
    return "" if left is None else f" ({max(0, int(left))} s left)"


@dataclass
class ApprovalDesk:
    """The MCP client's elicitation callback: every server question goes to `approver`, never the model.

    `approval_timeout` (the server's, in seconds) dates each question's deadline from its arrival.
    """

    approver: Approver
    observer: ApprovalObserver
    approval_timeout: float | None = None
    clock: Callable[[], float] = time.time
    records: list[tuple[Question, Answer]] = field(default_factory=list)
    """The latest `RECORDS_KEPT` questions and their answers, oldest first."""
    interrupted: bool = False
    """A person interrupted an approval question (Ctrl-C): see `stop_if_interrupted`."""
    _links: dict[str, Question] = field(default_factory=dict, repr=False)
    """Desk links asked for, by URL, until their deadline is `LINK_GRACE_SECONDS` past: a repeat is the same
    approval still waiting at the desk."""
    _given_up: set[str] = field(default_factory=set, repr=False)
    """Desk links the approver withdrew or stopped waiting for: not followed again (forgotten with `_links`)."""

    async def __call__(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        question = self._question(params)
        return (await self._ask(question)).result(question)

    async def pending_link(self, output: Mapping[str, Any]) -> str | None:
        """A `pending_approval` result (a server that asked no question) shown like a desk link.

        Returns the `approval_ref` to call the tool again with once the approver has seen the
        link (again at the desk's pace while it stays pending), or `None` to hand the result on:
        also for a link the approver withdrew (a 2026-07-28 server answers a declined link so).
        """
        url, ref = output.get("approval_url"), output.get("approval_ref")
        if output.get("status") != "pending_approval" or not isinstance(url, str) or not isinstance(ref, str):
            return None
        if url in self._given_up:
            return None
        message = str(output.get("message") or f"Approval {ref} waits for a decision at the approval desk.")
        question = self._question(mcp_types.ElicitRequestURLParams(message=message, url=url))
        deadline = epoch_of(output.get("expires_at"))
        if deadline is not None and question.repeat == 0:
            question = replace(question, deadline=deadline)
            self._links[url] = question
        answer = await self._ask(question)
        return ref if answer.action == "accept" else None

    async def _ask(self, question: Question) -> Answer:
        """The approver's answer; a desk link asked again is shown and recorded only when it ends."""
        first = question.repeat == 0
        if first:
            self.observer.approval_asked(question, self.approver.name)
        answer = await self.approver.answer(question)
        self.interrupted = self.interrupted or answer.interrupted
        if question.url is not None and answer.action != "accept":
            self._given_up.add(question.url)
        if first or answer.action != "accept":
            self.records.append((question, answer))
            del self.records[:-RECORDS_KEPT]
            self.observer.approval_answered(question, answer)
        return answer

    def _question(self, params: mcp_types.ElicitRequestParams) -> Question:
        """The question `params` put; a desk link asked before comes back as a repeat of the first."""
        self._forget_past()
        if isinstance(params, mcp_types.ElicitRequestURLParams):
            previous = self._links.get(params.url)
            if previous is not None:
                question = replace(previous, repeat=previous.repeat + 1)
                self._links[params.url] = question
                return question
            question = Question.from_url_params(params)
        else:
            question = Question.from_params(params)
        if question.stated_deadline is not None:  # the server's own: a key's question asked again is not new
            question = replace(question, deadline=question.stated_deadline)
        elif self.approval_timeout is not None:
            question = replace(question, deadline=self.clock() + self.approval_timeout)
        if question.url is not None:
            self._links[question.url] = question
        return question

    def _forget_past(self) -> None:
        """Forget desk links whose deadline is long past: the server no longer asks about them."""
        now = self.clock()
        for url in [url for url, question in self._links.items() if long_past(question.deadline, now)]:
            del self._links[url]
            self._given_up.discard(url)

    async def on_message(self, message: object) -> None:
        """The MCP client's message handler: a desk approval the server finished is shown as decided."""
        if isinstance(message, mcp_types.ElicitCompleteNotification):
            for question in self._links.values():
                if question.held and question.elicitation_id == message.params.elicitation_id:
                    self.observer.desk_decided(question)

    def stop_if_interrupted(self, tool: str, output: Mapping[str, Any]) -> None:
        """After a call's result is back (so the server has recorded the cancel), stop the host."""
        if self.interrupted:
            status = output.get("status", "unknown")
            raise Interrupted(f"Interrupted: the approval for {tool} was cancelled (the server recorded: {status}).")


def long_past(deadline: float | None, now: float) -> bool:
    """Whether `deadline` passed more than `LINK_GRACE_SECONDS` ago (no deadline: never)."""
    return deadline is not None and deadline < now - LINK_GRACE_SECONDS


def epoch_of(value: object) -> float | None:
    """An ISO 8601 time (as in `expires_at`) in epoch seconds, or `None` when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def make_approver(spec: str, console: Console, interactive: bool) -> Approver:
    """The approver for `--approver console|deny|scripted:FILE` (default: console on a terminal, else deny)."""
    if spec == "deny":
        return DenyApprover()
    if spec.startswith("scripted:"):
        return ScriptedApprover.from_file(Path(spec.removeprefix("scripted:")))
    if spec == "console":
        if not interactive:
            raise ConfigurationError(
                "--approver console needs a terminal, and stdin is not one.",
                "Use --approver scripted:FILE for unattended runs, or leave the default (deny).",
            )
        return ConsoleApprover(console)
    raise ConfigurationError(f"Unknown approver {spec!r}: use console, deny or scripted:FILE.")
