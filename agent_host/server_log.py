"""The log of the stdio servers the host launches: one file for all of them, read back per launch.

A diagnostic explains the launch it is about: the lines of a server launched (and gone) before it,
shown beside them, would read as this one's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import IO

TAIL_LINES = 6


@dataclass
class ServerLog:
    """Where launched servers write their stderr, and where the current launch's lines begin."""

    file: IO[str] = field(repr=False)
    start: int = 0

    def new_launch(self) -> None:
        """Lines written from now on are the next server's."""
        self.start = self.file.seek(0, os.SEEK_END)

    def tail(self) -> str:
        """The current launch's last lines, which usually say why it stopped."""
        self.file.seek(self.start)
        lines = [line for line in self.file.read().splitlines() if line.strip()]
        return "Server log: " + " | ".join(lines[-TAIL_LINES:]) if lines else ""
