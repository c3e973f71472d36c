"""Reading from the person at the terminal while the event loop waits.

Reads block the event loop's thread on purpose: the host is idle while a person types, and a
read in a worker thread could not be stopped. The asyncio runner turns Ctrl-C into a task
cancellation that a blocked `input()` never sees, so during a read the default handler is put
back and Ctrl-C raises `KeyboardInterrupt` right there. Linux may hand Ctrl-C to any thread of the
process (the host has worker threads), and Python runs handlers on the main thread only, between
its own steps: a read blocked in the kernel would not see it until the next key press. So a read
first waits for input in short `select` steps (`wait_for_input`), each a chance to raise.

Keys typed before a question is shown are discarded first (`discard_typeahead`): they were not
typed in answer to it, and a model could have asked for them ("press y to continue").

What others wrote (the model, the tools, the server) is printed `printable`: see `agent_host.display`.
"""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.prompt import Confirm, Prompt
from rich.text import TextType

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
"""C0 and C1 controls but tab and newline, the characters that reorder or break bidirectional text, and lone
surrogates (JSON can escape one, `"\\ud800"`; a UTF-8 terminal cannot print it, and the write fails)."""
_UNSAFE_IN_A_LINE = re.compile(f"{_UNSAFE.pattern}|\n")


def printable(text: str, *, lines: bool = True) -> str:
    """`text` with every unsafe character written as its escape; newlines too unless `lines`."""
    unsafe = _UNSAFE if lines else _UNSAFE_IN_A_LINE
    return unsafe.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


SHOWN_CHARACTERS = 400
"""How much of a tool call's arguments, or of a result's message, a line shows: a model (or a tool) sending a
megabyte would otherwise scroll the bank's question and the approval prompt off the terminal."""


def clipped(text: str) -> str:
    """`text` up to `SHOWN_CHARACTERS`, then how many characters were left out."""
    left_out = len(text) - SHOWN_CHARACTERS
    return text if left_out <= 0 else f"{text[:SHOWN_CHARACTERS]}… ({left_out:,} more characters)"


def one_line(text: str) -> str:
    """Text others wrote within a line of the host's own: escaped, line breaks too, so that it cannot begin a line
    that passes for the host's, and clipped."""
    return clipped(printable(text, lines=False))


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, Ctrl-C raises `KeyboardInterrupt` even inside a blocking read."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


WAIT_STEP_S = 0.1
"""How long a Ctrl-C taken by another thread can go unseen while a prompt waits."""


def wait_for_input() -> None:
    """Return once standard input has something to read (or is closed), seeing Ctrl-C all the while.

    A stand-in without a file descriptor (a test's) has nothing to wait on, and one that `select` cannot
    wait on (a Windows console) is read at once, as before.
    """
    try:
        fd = sys.stdin.fileno()
        while not select.select([fd], [], [], WAIT_STEP_S)[0]:
            pass
    except (AttributeError, OSError, ValueError):
        return


def discard_typeahead() -> None:
    """Drop what was typed at the terminal but not read yet, so that only keys pressed from now on answer.

    Nothing to do without a terminal (a pipe or a test's stand-in), or on Windows.
    """
    if sys.platform == "win32":
        return
    import termios

    try:
        fd = sys.stdin.fileno()
        if os.isatty(fd):
            termios.tcflush(fd, termios.TCIFLUSH)
    except (AttributeError, OSError, ValueError, termios.error):
        return


class _WaitsForInput:
    """A rich prompt that shows itself, then reads only once `wait_for_input` says there is input."""

    @classmethod
    def get_input(cls, console: Console, prompt: TextType, password: bool, stream: TextIO | None = None) -> str:
        console.print(prompt, end="")
        wait_for_input()
        return console.input(password=password, stream=stream)


class TerminalConfirm(_WaitsForInput, Confirm):
    """`rich.prompt.Confirm` for a terminal read within `interruptible`."""


class TerminalPrompt(_WaitsForInput, Prompt):
    """`rich.prompt.Prompt` for a terminal read within `interruptible`."""
