"""What happened in a response chain the service can no longer continue, told from the host's records.

Foundry runs expire about ten minutes after creation, so a response whose calls waited on a human
can be gone by the time their answers are sent. The host then knows each call's outcome already:
it ran every call through MCP with the Foundry `call_id` as idempotency key and kept the result
the server returned (and stored under that key). Nothing is run or re-run to find out: a call whose
result never came back (`tool_unavailable`) is reported as unknown, because calling it again
would run it for the first time if it never reached the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent_host.foundry.function_tools import FunctionCall
from agent_host.terminal import one_line

Fate = Literal["ran", "not run", "unknown"]

_RAN = frozenset({"executed", "completed", "succeeded"})


@dataclass(frozen=True)
class Answer:
    """A function call and the output the host answers it with (the MCP result, or a refusal)."""

    call: FunctionCall
    output: Mapping[str, Any]

    def item(self) -> dict[str, Any]:
        """The `function_call_output` input item."""
        return {"type": "function_call_output", "call_id": self.call.call_id, "output": json.dumps(self.output)}

    @property
    def fate(self) -> Fate:
        error = self.output.get("error")
        if isinstance(error, Mapping) and error.get("code") == "tool_unavailable":
            return "unknown"
        return "ran" if str(self.output.get("status")) in _RAN else "not run"

    def describe(self, shown: Callable[[str], str] = one_line) -> str:
        """`transfer_funds {...}: <fate> (<status>: <message>)`, what others wrote as `shown`: for the person, one
        line (`one_line`), as a name or arguments the model wrote, refused as they were, would otherwise add lines of
        their own to the host's report of what ran; for the model, whole (`str`), as it must tell the calls apart."""
        status = self.output.get("status", "?")
        error = self.output.get("error")
        message = self.output.get("message") or (error.get("message") if isinstance(error, Mapping) else "")
        return f"{shown(f'{self.call.name} {self.call.arguments}')}: {self.fate} ({shown(f'{status}: {message}')})"


@dataclass(frozen=True)
class LostChain:
    """The calls of a response chain that expired before the service took their answers."""

    answers: Sequence[Answer]
    reason: str
    asked: str | None = None
    """The user message that led to these calls, when the host still has it."""

    def report(self) -> str:
        """For the user: what ran, what did not, and that the conversation goes on."""
        lines = [f"The service can no longer continue this conversation's last response ({self.reason})."]
        for fate, heading in (
            ("ran", "Ran"),
            ("not run", "Did not run"),
            ("unknown", "Outcome unknown (not retried: check before asking again)"),
        ):
            lines += [f"  {heading}: {answer.describe()}" for answer in self.answers if answer.fate == fate]
        if not self.answers:
            lines.append("  No tool calls were waiting for an answer.")
        lines.append("The conversation continues on a new response chain that is told what happened.")
        return "\n".join(lines)

    def context_item(self) -> dict[str, Any]:
        """A developer message opening the new chain with the facts (the earlier chain is gone)."""
        facts = "; ".join(answer.describe(str) for answer in self.answers) or "no tool calls were pending"
        asked = f"The user had asked: {json.dumps(self.asked, ensure_ascii=False)}. " if self.asked else ""
        text = (
            "Context from the host: the previous response chain expired and was replaced by this one. "
            f"{asked}Tool calls made for it and their outcomes: {facts}. "
            "Do not repeat these calls unless the user asks for them again."
        )
        return {"role": "developer", "content": text}
