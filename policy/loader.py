"""Reading a policy file: TOML in, a validated `Policy` out, or errors that say where and what.

The version is a hash of the parsed content, so reformatting or commenting a file keeps it.
"""

import bisect
import os
import re
import tomllib
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from policy.canonical import digest
from policy.channel import DEFAULT_CHANNEL, Channel
from policy.document import Policy, Rule, ToolPolicy
from policy.expressions import Condition, ExpressionError
from policy.facts import ACCOUNT_ARGUMENTS, ACCOUNT_ROLES, AccountFacts, CallFacts
from policy.lint import Arguments, default_overlap, desk_dropped, rule_warnings, visibility_warnings
from policy.messages import DECIDED_ENDS, STATUSES, template_problem
from policy.outcome import Outcome
from policy.writers import other_writers

DEFAULT_POLICY = "default_policy.toml"

_TOOL_KEYS = {"default", "reason", "rules", "confirm", "messages", "channel"}
_RULE_KEYS = {"name", "when", "outcome", "reason", "messages", "channel"}
_TOP_KEYS = {"policy", "tools", "accounts"}
_ACCOUNT_KEYS = {"visible"}
_POLICY_KEYS = {"name"}
VISIBILITY_VARIABLES = frozenset({"principal", "roles", "account", "tool", "args", "now"})
"""What `[accounts] visible` may read: who asks, and the account asked about."""


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    line: int | None = None

    def shown(self, source: str) -> str:
        return f"{source}{f':{self.line}' if self.line else ''}: {self.key}: {self.message}"


class PolicyError(ValueError):
    """Every problem found in a policy file, each with its key path and (where known) line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.shown(self.source) for p in self.problems]


def load_policy(path: str | Path | None = None, *, catalog: Mapping[str, Arguments] | None = None) -> Policy:
    """Load `path`, or the shipped default policy when `path` is None.

    `catalog` maps each tool the server publishes to its arguments (each with whether a call must
    carry it); when given, the policy is also checked against it (unknown tools, `confirm` naming no
    argument, rules that fail on a sample call). The policy's `warnings` name rules that load but
    cannot mean what their author meant (`policy.lint`).
    """
    if path is None:
        text = resources.files("policy").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")
        return parse_policy(text, source=f"<default {DEFAULT_POLICY}>", catalog=catalog)
    try:
        with Path(path).open(encoding="utf-8-sig") as file:  # a leading byte order mark (Notepad's) dropped
            writers = other_writers(os.fstat(file.fileno()).st_mode)  # the open file's: no swap in between
            text = file.read()
    except OSError as exc:
        raise PolicyError(str(path), [Problem("(file)", f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise PolicyError(str(path), [Problem("(file)", "not UTF-8 text; save the policy as UTF-8")]) from None
    if writers is not None:  # whoever may write it decides what runs without a human, from the next start
        fix = f"{writers}, and so decide what runs without approval; let only its owner write it: chmod 644 {path}"
        raise PolicyError(str(path), [Problem("(file)", fix)])
    return parse_policy(text, source=str(path), catalog=catalog)


def parse_policy(text: str, *, source: str, catalog: Mapping[str, Arguments] | None = None) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [Problem("(syntax)", str(exc))]) from None
    reader = _Reader(text)
    reader.header(data.get("policy"))
    tools = reader.tools(data, catalog)
    visible = reader.visibility(data.get("accounts"), catalog, tools)
    if reader.problems:
        raise PolicyError(source, reader.problems)
    version = "sha256:" + digest(data)[:16]
    warnings = tuple(w.shown(source) for w in reader.warnings)
    return Policy(tools=tools, version=version, source=source, visible=visible, warnings=warnings)


class _Reader:
    """Walks the parsed TOML, collecting every problem instead of stopping at the first."""

    def __init__(self, text: str) -> None:
        self.places = _Places(text)
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def problem(self, key: str, message: str, table: str | None = None, occurrence: int = 0) -> None:
        self.problems.append(Problem(key, message, self.places.line(key.rsplit(".", 1)[-1], table, occurrence)))

    def tools(self, data: Mapping[str, Any], catalog: Mapping[str, Arguments] | None) -> dict[str, ToolPolicy]:
        for key in sorted(set(data) - _TOP_KEYS):
            self.problem(key, f"unknown key (expected one of: {', '.join(sorted(_TOP_KEYS))})")
        raw_tools = data.get("tools")
        if not isinstance(raw_tools, dict) or not raw_tools:
            self.problem("tools", "the policy must have a [tools.<name>] table for at least one tool")
            return {}
        tools: dict[str, ToolPolicy] = {}
        for name, raw in raw_tools.items():
            if catalog is not None and name not in catalog:
                self.problem(
                    f"tools.{name}", f"no such tool (the server has: {', '.join(sorted(catalog))})", f"tools.{name}"
                )
            if not isinstance(raw, dict):
                self.problem(f"tools.{name}", "must be a table")
                continue
            tool = self.tool(name, raw, None if catalog is None else catalog.get(name))
            if tool is not None:
                tools[name] = tool
        return tools

    def header(self, raw: Any) -> None:
        """The `[policy]` table: its `name` only. Nothing else in it is read, so anything else (a
        `[policy.accounts]` meant as `[accounts]`) would be ignored, perhaps widening access: refused."""
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.problem("policy", "must be a table")
            return
        for extra in sorted(set(raw) - _POLICY_KEYS):
            self.problem(f"policy.{extra}", f"unknown key (expected: {', '.join(sorted(_POLICY_KEYS))})", "policy")
        if "name" in raw and (not isinstance(raw["name"], str) or not raw["name"].strip()):
            self.problem("policy.name", "must be a non-empty string", "policy")
        elif "name" in raw:
            self.one_line(raw["name"], "policy.name", "policy")

    def visibility(self, raw: Any, catalog: Mapping[str, Arguments] | None, tools: Collection[str]) -> Condition | None:
        """The `[accounts]` table: `visible`, a CEL condition deciding who may learn of an account, in a call of any
        tool (the catalog's, else the policy's `tools`): one that fails for a call of some tool hides every account
        from every such call, so it is refused, as a rule failing on a sample call is."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.problem("accounts", "must be a table")
            return None
        for extra in sorted(set(raw) - _ACCOUNT_KEYS):
            self.problem(f"accounts.{extra}", f"unknown key (expected: {', '.join(sorted(_ACCOUNT_KEYS))})", "accounts")
        source = raw.get("visible")
        if not isinstance(source, str) or not source.strip():
            self.problem("accounts.visible", "is required and must be a non-empty CEL condition", "accounts")
            return None
        try:
            condition = Condition.compile(source)
            unknown = sorted(condition.variables - VISIBILITY_VARIABLES)
            if unknown:
                raise ExpressionError(
                    f"unknown variable {', '.join(unknown)} (known here: {', '.join(sorted(VISIBILITY_VARIABLES))})"
                )
            for tool, arguments in sorted((catalog or _BALANCE_READ).items()):
                try:
                    condition.holds(_sample_call(tool, arguments))
                except ExpressionError as exc:
                    raise ExpressionError(f"fails to evaluate for a call of {tool}: {exc}") from None
        except ExpressionError as exc:
            self.problem("accounts.visible", str(exc), "accounts")
            return None
        line = self.places.line("visible", "accounts", 0)
        self.warnings += [Problem("accounts.visible", w, line) for w in visibility_warnings(source, catalog or tools)]
        return condition

    def tool(self, name: str, raw: Mapping[str, Any], arguments: Arguments | None) -> ToolPolicy | None:
        key, table = f"tools.{name}", f"tools.{name}"
        for extra in sorted(set(raw) - _TOOL_KEYS):
            self.problem(f"{key}.{extra}", f"unknown key (expected: {', '.join(sorted(_TOOL_KEYS))})", table)
        default = self.outcome(raw.get("default"), f"{key}.default", table)
        reason = raw.get("reason", _DEFAULT_REASONS[default] if default is not None else "")
        if "reason" in raw and (not isinstance(reason, str) or not reason.strip()):
            self.problem(f"{key}.reason", "must be a non-empty string", table)
        elif "reason" in raw:
            self.one_line(reason, f"{key}.reason", table)
        confirm = raw.get("confirm")
        if confirm is not None and (
            not isinstance(confirm, str) or (arguments is not None and confirm not in arguments)
        ):
            known = f" (arguments: {', '.join(arguments)})" if arguments is not None else ""
            self.problem(f"{key}.confirm", f"must name an argument of the tool{known}", table)
        raw_rules = raw.get("rules", [])
        if not isinstance(raw_rules, list):
            self.problem(f"{key}.rules", "must be an array of tables ([[tools.<name>.rules]])", table)
            raw_rules = []
        messages = self.messages(raw.get("messages", {}), f"{key}.messages", table, arguments)
        rules = [self.rule(name, i, r, arguments) for i, r in enumerate(raw_rules)]
        names = [r.name for r in rules if r is not None]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            self.problem(f"{key}.rules", f"rule name '{dup}' is used more than once", table)
        channel = self.channel(raw, key, table)
        asks = default is Outcome.REQUIRE_APPROVAL or any(
            r is not None and r.outcome is Outcome.REQUIRE_APPROVAL for r in rules
        )
        if "channel" in raw and not asks:
            self.problem(f"{key}.channel", "applies only to a tool whose default or a rule is require_approval", table)
        if confirm is not None and not asks:  # else it reads as a confirmation the tool's calls never ask for
            self.problem(
                f"{key}.confirm",
                "applies only to a tool whose default or a rule is require_approval (nothing is ever typed back here)",
                table,
            )
        if default is None or not isinstance(reason, str):
            return None
        kept = tuple(r for r in rules if r is not None)
        for index, rule in enumerate(rules):
            overlap = None if rule is None or default is None else default_overlap(rule, default)
            if overlap is not None:
                line = self.places.line("outcome", f"[{key}.rules]", index)
                self.warnings.append(Problem(f"{key}.rules[{index}].outcome", overlap, line))
            dropped = None if rule is None else desk_dropped(rule, channel or DEFAULT_CHANNEL)
            if dropped is not None:
                line = self.places.line("channel", f"[{key}.rules]", index)
                self.warnings.append(Problem(f"{key}.rules[{index}].channel", dropped, line))
        return ToolPolicy(name, default, reason, kept, confirm, messages, channel or DEFAULT_CHANNEL)

    def rule(self, tool: str, index: int, raw: Any, arguments: Arguments | None) -> Rule | None:
        key, table = f"tools.{tool}.rules[{index}]", f"[tools.{tool}.rules]"
        if not isinstance(raw, dict):
            self.problem(key, "must be a table")
            return None
        for extra in sorted(set(raw) - _RULE_KEYS):
            self.problem(f"{key}.{extra}", f"unknown key (expected: {', '.join(sorted(_RULE_KEYS))})", table, index)
        fields: dict[str, Any] = {}
        for field in ("name", "when", "reason"):
            value = raw.get(field)
            if not isinstance(value, str) or not value.strip():
                self.problem(f"{key}.{field}", "is required and must be a non-empty string", table, index)
            elif field != "when":  # a condition may span lines; CEL reads it, nobody is shown it as a line
                self.one_line(value, f"{key}.{field}", table, index)
            fields[field] = value
        outcome = self.outcome(raw.get("outcome"), f"{key}.outcome", table, index)
        channel = self.channel(raw, key, table, index)
        if channel is not None and outcome is not None and outcome is not Outcome.REQUIRE_APPROVAL:
            self.problem(f"{key}.channel", "applies only to a rule whose outcome is require_approval", table, index)
        messages = self.messages(raw.get("messages", {}), f"{key}.messages", table, arguments, index)
        if outcome is not None:
            self.undecided_ends(messages, outcome, f"{key}.messages", f"[tools.{tool}.messages]", table, index)
        if not isinstance(fields["when"], str) or outcome is None:
            return None
        try:
            condition = Condition.compile(fields["when"])
            if arguments is not None:
                _binds_its_accounts(condition, tool, arguments)
                condition.holds(_sample_call(tool, arguments))
        except ExpressionError as exc:
            self.problem(f"{key}.when", str(exc), table, index)
            return None
        line = self.places.line("when", table, index)
        found = rule_warnings(fields["when"], tool, arguments)
        if arguments is not None:
            found += _fails_without_decimals(condition, tool, arguments)
        self.warnings += [Problem(f"{key}.when", w, line) for w in found]
        name, reason = fields["name"], fields["reason"]
        if not isinstance(name, str) or not isinstance(reason, str):
            return None
        return Rule(name, condition, outcome, reason, messages, channel)

    def messages(
        self, raw: Any, key: str, table: str, arguments: Arguments | None, occurrence: int = 0
    ) -> dict[str, str]:
        """Confirmation messages by status; every template is checked against the tool's facts."""
        if not isinstance(raw, dict):
            self.problem(key, f"must be a table of messages by status ({', '.join(STATUSES)})", table, occurrence)
            return {}
        messages: dict[str, str] = {}
        line = self.places.line("messages", table, occurrence)
        for status, template in raw.items():
            problem = template_problem(template, arguments) or _not_one_line(template)
            if status not in STATUSES:
                problem = f"unknown status (expected: {', '.join(STATUSES)})"
            if problem is not None:
                self.problems.append(Problem(f"{key}.{status}", problem, line))
                continue
            messages[status] = template
        return messages

    def undecided_ends(
        self, messages: dict[str, str], outcome: Outcome, key: str, tool_table: str, table: str, occurrence: int
    ) -> None:
        """Refuse a rule's wording of a status no call it decides ends in: it would never be shown."""
        ends = DECIDED_ENDS[outcome]
        line = self.places.line("messages", table, occurrence)
        for status in [s for s in messages if s not in ends]:
            self.problems.append(
                Problem(
                    f"{key}.{status}",
                    f"a {outcome.value} rule decides no call that ends {status}, so this is never shown (a rule words "
                    f"only {' and '.join(ends)}); word it for the tool, in {tool_table}",
                    line,
                )
            )

    def one_line(self, text: Any, key: str, table: str, occurrence: int = 0) -> None:
        """Refuse, in text people are shown as a line of the bank's (a name, a reason, a message), a character a
        terminal or a form acts on rather than shows."""
        problem = _not_one_line(text)
        if problem is not None:
            self.problem(key, problem, table, occurrence)

    def channel(self, raw: Mapping[str, Any], key: str, table: str, occurrence: int = 0) -> Channel | None:
        """`channel`: where the approval may be given (form, desk or any); None when not set or wrong."""
        if "channel" not in raw:
            return None
        try:
            return Channel(raw["channel"])
        except ValueError:
            choices = ", ".join(c.value for c in Channel)
            self.problem(f"{key}.channel", f"must be one of {choices}, not {raw['channel']!r}", table, occurrence)
            return None

    def outcome(self, value: Any, key: str, table: str, occurrence: int = 0) -> Outcome | None:
        try:
            return Outcome(value)
        except ValueError:
            choices = ", ".join(o.value for o in Outcome)
            self.problem(key, f"must be one of {choices}, not {value!r}", table, occurrence)
            return None


class _Places:
    """Where each table header and each `key =` starts in a policy's text, found in one pass, so the
    line of each of a policy's keys is found without reading the file again (once per rule was quadratic)."""

    def __init__(self, text: str) -> None:
        self.count = 0
        self.headers: dict[str, list[int]] = {}
        """Each table's name (`tools.x`, `tools.x.rules` for `[[tools.x.rules]]`), with its headers' lines."""
        self.bounds: list[int] = []
        """Every line a table ends before: one starting with `[`."""
        self.keys: dict[str, list[int]] = {}
        """Each key (the text before a line's first `=`), with the lines assigning it."""
        for index, line in enumerate(text.splitlines()):
            self.count += 1
            stripped = line.lstrip()
            if stripped.startswith("["):
                self.bounds.append(index)
                header = _HEADER.match(stripped)
                if header is not None:
                    self.headers.setdefault(header.group(1).rstrip(), []).append(index)
            elif "=" in stripped:
                self.keys.setdefault(stripped.split("=", 1)[0].rstrip(), []).append(index)

    def line(self, leaf: str, table: str | None, occurrence: int) -> int | None:
        """Best-effort line of `leaf` inside the `occurrence`-th `table` header (1-based), else of the
        header, else (no table) of its first assignment anywhere."""
        start, end = 0, self.count
        if table is not None:
            hits = self.headers.get(table.strip("[]"), [])
            if len(hits) <= occurrence:
                return None
            start = hits[occurrence]
            later = bisect.bisect_right(self.bounds, start)
            end = self.bounds[later] if later < len(self.bounds) else self.count
        assigned = self.keys.get(leaf.split("[", 1)[0], [])
        first = bisect.bisect_left(assigned, start)
        if first < len(assigned) and assigned[first] < end:
            return assigned[first] + 1
        return start + 1 if table is not None else None


_HEADER = re.compile(r"\[\[?\s*([^\]]*)\]")
"""A table header (`[tools.x]`, `[[tools.x.rules]]`): its name, up to the first `]`."""


def _not_one_line(text: Any) -> str | None:
    """Why `text` is not one line of text a screen shows as written (no control, formatting or line-breaking
    character; any space will do: "1 000 €" is French typography), if it is a string that is not. A reason is a
    line of the question an approver reads, where a line break could add a line the bank never wrote ("Requested
    by: ..."); names and reasons are lines of `policy check` and `policy explain`, where an escape could hide a rule."""
    if not isinstance(text, str) or text.isprintable():
        return None
    found = next((ch for ch in text if unicodedata.category(ch) in _UNSHOWN), None)
    if found is None:  # only spaces other than the plain one, which `isprintable` counts out
        return None
    return (
        f"holds U+{ord(found):04X}, a control, formatting or line-breaking character that a screen acts on or hides "
        "rather than shows; write it as one line of visible text"
    )


_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""The categories of characters that are not text as written: controls (line feed, tab, escape), formats (bidi
overrides, zero-width), surrogates, private use, unassigned, line and paragraph separators."""


_DEFAULT_REASONS = {
    Outcome.ALLOW: "Allowed by the policy.",
    Outcome.REQUIRE_APPROVAL: "The policy requires a human's approval for this action.",
    Outcome.DENY: "The policy does not allow this action.",
}


_BALANCE_READ: Mapping[str, Arguments] = {"get_account_balance": {"account_id": True}}
"""The call `[accounts] visible` is tried on when the server's tools are not known."""


def _binds_its_accounts(condition: Condition, tool: str, arguments: Arguments) -> None:
    """Refuse a condition reading an account variable `tool` never binds: null on every call, it would
    fail to evaluate, and so deny, every call of the tool (the sample call binds every account)."""
    has = [role for role, argument in ACCOUNT_ARGUMENTS.items() if argument in arguments]
    lacking = sorted(condition.variables & set(ACCOUNT_ARGUMENTS) - set(has))
    if lacking:
        raise ExpressionError(
            f"reads {', '.join(lacking)}, which a call of {tool} never has (it has: {', '.join(has) or 'none'})"
        )


def _sample_call(tool: str, arguments: Collection[str], currency: str = "USD", exponent: int = 2) -> CallFacts:
    """A plausible call, so `policy check` catches rules that fail at run time (type errors)."""
    account = AccountFacts("ACC-001", "Sample Owner", "open", currency, 100_000, ("owner",))
    return CallFacts(
        tool=tool,
        arguments=dict.fromkeys(arguments, "1"),
        principal="sample",
        roles=("operator",),
        currency=currency,
        minor_exponent=exponent,
        amount_minor=100,
        accounts=dict.fromkeys(ACCOUNT_ROLES, account),
    )


def _fails_without_decimals(condition: Condition, tool: str, arguments: Collection[str]) -> list[str]:
    """A warning if `condition`, which evaluates for the sample call in USD, fails for one in a currency without
    minor units: `minor('500.50')` is finer than a yen, so every call in yen would be denied, a 5-yen one too."""
    try:
        condition.holds(_sample_call(tool, arguments, "JPY", 0))
    except ExpressionError as exc:
        return [
            f"fails to evaluate for a call in a currency without decimals (such as JPY), so every such call is "
            f"denied ({exc}); fix: whole units (minor(500)), or guard the rule by currency: currency == 'USD' && ..."
        ]
    return []
