"""Test doubles for policies and the gate: a scripted MCP approver, and an in-memory `GateStore`."""

from policy.testing.memory_store import MemoryGateStore, MemoryLedger, MemoryTx
from policy.testing.responder import (
    TYPE_IT_BACK,
    Answer,
    Question,
    ScriptedResponder,
    approve,
    cancel,
    decline,
    invalid,
    reject,
    silence,
)

__all__ = [
    "TYPE_IT_BACK",
    "Answer",
    "MemoryGateStore",
    "MemoryLedger",
    "MemoryTx",
    "Question",
    "ScriptedResponder",
    "approve",
    "cancel",
    "decline",
    "invalid",
    "reject",
    "silence",
]
