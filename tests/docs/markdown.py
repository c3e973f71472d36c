"""The documents a user copies from, read as a user reads them: their code blocks (fenced or indented),
inline code, and links, each with the file and line it came from, so a failing test names where to look."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/DEPLOYMENT.md", "docs/ARCHITECTURE.md", "docs/DESIGN.md")
"""What a user follows (RESULTS.md and the wire notes are records, not instructions)."""

_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """A code block: its language ('' when unlabelled or indented), text, and where it starts."""

    document: str
    line: int
    language: str
    text: str
    marker: str | None
    """The HTML comment on the line just above the block (invisible when rendered), e.g. 'policy fragment'."""

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def text_of(document: str) -> str:
    return (ROOT / document).read_text(encoding="utf-8")


def blocks(document: str) -> list[Block]:
    """Every fenced block, and every indented (4 spaces) block outside a fence and a list item."""
    lines = text_of(document).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marker = _MARKER.match(lines[i - 1].strip()) if i else None
            body = "\n".join(line.removeprefix(fence.group(1)) for line in lines[i + 1 : end])
            found.append(Block(document, i + 2, fence.group(2), body, marker.group(1) if marker else None))
            i = end + 1
            continue
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = "\n".join(line[4:] for line in lines[i:end]).strip("\n")
            found.append(Block(document, i + 1, "", body, None))
            i = end
            continue
        i += 1
    return found


def all_blocks(language: str | None = None) -> list[Block]:
    return [b for d in DOCUMENTS for b in blocks(d) if language is None or b.language == language]


def prose(document: str) -> Iterator[tuple[int, str]]:
    """The lines outside fenced blocks, numbered from 1."""
    inside = False
    for number, line in enumerate(text_of(document).splitlines(), 1):
        if _FENCE.match(line):
            inside = not inside
        elif not inside:
            yield number, line


def inline_code(document: str) -> Iterator[tuple[int, str]]:
    for number, line in prose(document):
        for match in _INLINE.finditer(line):
            yield number, match.group(1)
