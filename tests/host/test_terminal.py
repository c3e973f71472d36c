"""Reading a line at the terminal (`agent_host.terminal`): Ctrl-C ends the read, whichever thread took it."""

from __future__ import annotations

import io
import os
import sys

import pytest

from agent_host.cli.chat import _read_line

from .keyboard import ctrl_c_on_another_thread


def test_ctrl_c_taken_by_another_thread_ends_the_chat_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = io.StringIO()
    monkeypatch.setattr("sys.stdout", shown)

    line, typed_first = ctrl_c_on_another_thread(
        monkeypatch, lambda: _read_line(True), lambda: "you ›" in shown.getvalue()
    )

    assert isinstance(line, KeyboardInterrupt)
    assert not typed_first, "the prompt saw Ctrl-C only when a key was pressed"


def test_the_chat_prompt_reads_a_typed_line_and_the_end_of_input(monkeypatch: pytest.MonkeyPatch) -> None:
    leader, follower = os.openpty()
    monkeypatch.setattr("sys.stdin", os.fdopen(follower, "r"))
    monkeypatch.setattr("sys.stdout", io.StringIO())
    os.write(leader, b"send 5 to ACC-002\n\x04")  # a line, then Ctrl-D

    try:
        assert (_read_line(True), _read_line(True)) == ("send 5 to ACC-002", None)
    finally:
        os.close(leader)
        sys.stdin.close()


def test_input_select_cannot_wait_on_is_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where `select` takes sockets only (Windows), the prompt reads as a plain `input()` would."""

    def sockets_only(*args: object) -> None:
        raise OSError(10038, "An operation was attempted on something that is not a socket")

    leader, follower = os.openpty()
    monkeypatch.setattr("sys.stdin", os.fdopen(follower, "r"))
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setattr("select.select", sockets_only)
    os.write(leader, b"hello\n")

    try:
        assert _read_line(True) == "hello"
    finally:
        os.close(leader)
        sys.stdin.close()
