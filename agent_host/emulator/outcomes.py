"""Text grounded in tool results: what the stand-in model says after `function_call_output`s.

Outputs are JSON strings the host builds from MCP results (statuses such as `executed` or
`rejected`, `{"error": {...}}`, balances); anything else is summarised as it stands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent_host.emulator.items import FunctionCall

_SUCCESS = ("executed", "completed", "succeeded", "success", "ok")
_NOTHING_DONE = {
    "rejected": "was rejected by the operator; nothing was done.",
    "cancelled": "was cancelled; nothing was done.",
    "canceled": "was cancelled; nothing was done.",
    "expired": "expired before it was approved; nothing was done.",
    "denied": "was denied by policy; nothing was done.",
}


def describe_outcome(call: FunctionCall | None, output: str) -> str:
    """One or two sentences reporting `output` of `call` (`None` if the call is not known)."""
    tool = call.name if call else None
    args = _json_object(call.arguments) if call else {}
    action = _action(tool, args)
    result = _json_object(output)
    if not result:
        return f"The {action} returned: {output.strip() or '(nothing)'}"
    message = result.get("message")
    detail = f" {message}" if isinstance(message, str) and message else ""
    error = result.get("error")
    if error is not None:
        return f"The {action} failed: {_error_text(error)}"
    status = str(result.get("status", "")).lower()
    if status in _NOTHING_DONE:
        return f"The {action} {_NOTHING_DONE[status]}{detail}"
    if "balance" in result and (not status or status in _SUCCESS):
        return _balance(result, args)
    if status in _SUCCESS:
        return _success(tool, action, args) + detail
    if status:
        return f"The {action} is {status}.{detail}"
    if detail:
        return f"The {action} returned:{detail}"
    return f"The {action} returned " + ", ".join(f"{key}: {value}" for key, value in result.items()) + "."


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _action(tool: str | None, args: Mapping[str, Any]) -> str:
    if tool == "transfer_funds":
        return f"transfer of {args.get('amount')} from {args.get('from_account')} to {args.get('to_account')}"
    if tool == "close_account":
        return f"closure of {args.get('account_id')}"
    if tool == "get_account_balance":
        return f"balance check for {args.get('account_id')}"
    return f"call to {tool}" if tool else "tool call"


def _error_text(error: object) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    message = str(error.get("message") or "no reason given")
    code = error.get("code")
    return f"{message} ({code})" if code and str(code) not in message else message


def _balance(result: Mapping[str, Any], args: Mapping[str, Any]) -> str:
    account = result.get("account_id") or args.get("account_id") or "The account"
    amount = result.get("formatted") or " ".join(str(v) for v in (result.get("balance"), result.get("currency")) if v)
    return f"{account} has a balance of {amount}."


def _success(tool: str | None, action: str, args: Mapping[str, Any]) -> str:
    if tool == "close_account":
        sweep = f", with the remaining funds swept to {args['sweep_to']}" if args.get("sweep_to") else ""
        return f"Done: account {args.get('account_id')} is closed{sweep}."
    return f"Done: the {action} {'is complete' if tool == 'transfer_funds' else 'succeeded'}."
