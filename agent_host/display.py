"""What the user sees: the conversation, tool calls and results, approval questions, warnings.

On a terminal it uses rich panels, rules and colours; otherwise (pipes, CI, tests) it prints plain
text with the same content. Text from the model, the tools and the server is printed as text,
never interpreted as rich markup, and its control and bidirectional formatting characters are shown
escaped (`\\x1b`, `\\u202e`): a prompt-injected model could otherwise move the cursor, erase lines
or reorder text on the terminal and pass its words off as the host's or the bank's, next to the
approval prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from agent_host.approvers import Answer, DenyApprover, Question
from agent_host.errors import HostError
from agent_host.foundry.function_tools import BadArguments, FunctionCall, read_arguments
from agent_host.foundry.response_reader import Reply
from agent_host.mcp_link import ToolResult
from agent_host.terminal import clipped, one_line, printable

_STATUS_STYLES = {"executed": "green", "failed": "red"}
_ANSWER_STYLES = {"approved": "green", "rejected": "red"}


class Display:
    """Renders to `console` (stdout by default); errors go to `errors` (stderr by default)."""

    def __init__(
        self, console: Console | None = None, *, errors: Console | None = None, show_ids: bool = False
    ) -> None:
        self.console = console or Console(highlight=False)
        self.errors = errors or Console(stderr=True, highlight=False, soft_wrap=True)
        self.fancy = self.console.is_terminal
        if not self.fancy:
            self.console.soft_wrap = True  # plain text: lines as long as they are, for logs and pipes
        self.show_ids = show_ids
        self._streaming = False

    # -- layout ---------------------------------------------------------------------------------

    def section(self, title: str) -> None:
        if self.fancy:
            self.console.rule(Text(printable(title), style="bold"))
        else:
            self.console.print(Text(f"\n== {printable(title)} =="))

    def panel(self, title: str, body: str, style: str = "cyan") -> None:
        title, body = printable(title, lines=False), printable(body)
        if self.fancy:
            self.console.print(Panel(Text(body), title=Text(title, style=f"bold {style}"), border_style=style))
        else:
            self.console.print(Text(f"+-- {title}\n" + "\n".join(f"| {line}" for line in body.splitlines())))

    def line(self, prefix: str, text: str, style: str = "") -> None:
        self.console.print(Text.assemble((prefix, style or "bold"), printable(text)))

    def note(self, text: str) -> None:
        self.console.print(Text(printable(text), style="dim"))

    def warning(self, text: str) -> None:
        self.console.print(Text(f"! {printable(text)}", style="yellow"))

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """A spinner on stderr while the host waits (only on a terminal: logs and pipes stay clean)."""
        if not self.errors.is_terminal:
            yield
            return
        with self.errors.status(Text(what), spinner="dots"):
            yield

    def error(self, error: HostError, program: str = "bankgate-agent") -> None:
        if self._streaming:  # a stream broke off mid-line
            self.console.print()
            self._streaming = False
        self.errors.print(Text(f"{program}: {printable(error.message)}", style="bold red"))
        if error.hint:
            self.errors.print(Text(f"  {printable(error.hint)}"))

    # -- the conversation (TurnObserver) --------------------------------------------------------

    def user(self, text: str) -> None:
        self.line("you › ", text)

    def stream_text(self, delta: str) -> None:
        if not self._streaming:
            self.console.print(Text("agent › ", style="bold blue"), end="")
            self._streaming = True
        self.console.print(Text(printable(delta)), end="")

    def reply(self, reply: Reply, previous_response_id: str | None, streamed: bool) -> None:
        if self._streaming:
            self.console.print()
            self._streaming = False
        elif reply.text:
            self.line("agent › ", reply.text, "bold blue")
        if streamed:
            counts = ", ".join(f"{kind} ×{count}" for kind, count in reply.events.items())
            self.note(f"stream: {reply.events.total()} events ({counts})")
        if self.show_ids:
            self.note(
                f"response {reply.response_id}"
                + (f" ← previous {previous_response_id}" if previous_response_id else "")
            )

    def tool_call(self, call: FunctionCall) -> None:
        self.line("  → ", f"{one_line(call.name)} {one_line(_compact(call.arguments))}", "magenta")

    def tool_result(self, call: FunctionCall, result: ToolResult) -> None:
        status = printable(str(result.output.get("status", "?")), lines=False)
        message = clipped(printable(str(result.output.get("message") or _error_message(result.output))))
        self.console.print(
            Text.assemble(("  ← ", "magenta"), (status, _STATUS_STYLES.get(status, "yellow")), f": {message}")
        )
        if result.diagnostic:
            self.warning(result.diagnostic)

    # -- approvals (ApprovalObserver) -----------------------------------------------------------

    def approval_asked(self, question: Question, approver: str) -> None:
        if question.url is not None:
            self._desk_link(question, waits=approver != DenyApprover.name)
            return
        fields = [
            f"  {f.name} ({'required' if f.required else 'optional'}): {f.description or f.title}"
            for f in question.fields
        ]
        body = question.message + ("\n\nForm:\n" + "\n".join(fields) if fields else "")
        left = question.seconds_left()
        if left is not None:
            within = f"Answer within {max(0, round(left))} s (by {_by(question)})"
            body += f"\n\n{within}; after that the server records it expired."
        self.panel(f"Approval question from the MCP server — answered by: {approver}", body, "yellow")

    def _desk_link(self, question: Question, *, waits: bool) -> None:
        """A desk approval: the server's text and the full link, printed as text (never opened here); the wait
        announced only where the host waits (the deny approver hands the link to the model at once)."""
        self.panel("Approval at the desk — this host only shows the link", question.message, "yellow")
        self.console.print(Text("Approve or reject at the approval desk (sign in with your passkey):"))
        self.console.print(Text(printable(str(question.url), lines=False), style="bold"), soft_wrap=True, crop=False)
        if waits:
            by = _by(question)
            self.console.print(Text(f"Waiting for the desk to decide{f' (until {by})' if by else ''}…", style="dim"))

    def desk_decided(self, question: Question) -> None:
        self.console.print(
            Text.assemble(
                ("  approval: ", "bold"), ("decided at the desk", "yellow"), printable(f" ({question.reference})")
            )
        )

    def approval_answered(self, question: Question, answer: Answer) -> None:
        details = [f"note: {answer.note}"] if answer.note else []
        if answer.confirmation is not None:
            details.append(f"confirmation: {answer.confirmation}")
        if answer.reason:
            details.append(answer.reason)
        suffix = f" ({'; '.join(details)})" if details else ""
        self.console.print(
            Text.assemble(
                ("  approval: ", "bold"), (answer.label, _ANSWER_STYLES.get(answer.label, "yellow")), printable(suffix)
            )
        )


def _by(question: Question) -> str | None:
    """The deadline with its date: one days away (a desk link's) read as a time alone looks like today's."""
    if question.deadline is None:
        return None
    return datetime.fromtimestamp(question.deadline, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _compact(arguments: str) -> str:
    """The arguments on one line as the call runs them; as sent when the host refuses them (see `read_arguments`)."""
    try:
        return json.dumps(read_arguments(arguments), ensure_ascii=False)
    except BadArguments:
        return arguments


def _error_message(output: Mapping[str, object]) -> str:
    error = output.get("error")
    return str(error.get("message")) if isinstance(error, Mapping) else json.dumps(output)
