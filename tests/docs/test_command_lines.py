"""Every `bankgate-mcp …` / `bankgate-agent …` command line the docs show is accepted by its argument
parser as a shell would pass it: the options exist and are spelled as shown. Parsing only: nothing runs.

Command lines are read from shell and plain code blocks (`$ ` marks a command among its output there) and
from inline code. An inline mention may leave out required arguments (`admin deposit` names the command);
a line in a block may not: it is what a user pastes.
"""

import argparse
import contextlib
import io
import json
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pytest

from agent_host.cli.main import build_parser
from mcp_server.cli.main import _parser as mcp_parser
from tests.docs.markdown import DOCUMENTS, all_blocks, inline_code

PROGRAMS = ("bankgate-mcp", "bankgate-agent")
_OPERATORS = set("|&;<>")


@dataclass(frozen=True)
class Shown:
    where: str
    argv: list[str]
    whole: bool
    """From a code block (the full command line), not an inline mention."""


def _commands(line: str) -> list[list[str]]:
    """The words of each simple command on `line` (split at |, &&, ;, a redirection), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="".join(sorted(_OPERATORS)))
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    redirected = False
    for word in lexer:
        if set(word) <= _OPERATORS:
            redirected = ">" in word or "<" in word
            if not redirected:
                commands.append([])
        elif redirected:
            redirected = False  # the redirection's target
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def _ours(words: list[str]) -> list[str] | None:
    """`words` from the program on (after any NAME=value assignments), if it is one of ours."""
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]
    return words if words and PurePosixPath(words[0]).name in PROGRAMS else None


def _shown() -> list[Shown]:
    shown: list[Shown] = []
    for block in all_blocks():
        if block.language not in ("", "bash"):
            continue
        prompts = any(line.startswith("$ ") for line in block.text.splitlines())
        for number, line in enumerate(block.text.replace("\\\n", " \n").splitlines()):
            if (prompts and not line.startswith("$ ")) or not any(p in line for p in PROGRAMS):
                continue  # output, or another program
            for words in _commands(line.removeprefix("$ ")):
                if (argv := _ours(words)) is not None:
                    shown.append(Shown(f"{block.document}:{block.line + number}", argv, whole=True))
    for block in all_blocks("json"):  # client configurations: a server's command and its args
        for server in _servers(json.loads(block.text)):
            if (argv := _ours([server["command"], *server.get("args", [])])) is not None:
                shown.append(Shown(block.where, argv, whole=True))
    for document in DOCUMENTS:
        for number, code in inline_code(document):
            if not code.startswith(PROGRAMS):
                continue  # prose quoting another program
            for words in _commands(code):
                if (argv := _ours(words)) is not None:
                    shown.append(Shown(f"{document}:{number}", argv, whole=False))
    return shown


def _servers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The stdio servers of a Claude Desktop (`mcpServers`) or VS Code (`servers`) configuration."""
    servers = config.get("mcpServers") or config.get("servers") or {}
    return [server for server in servers.values() if "command" in server]


SHOWN = _shown()


def _parse(argv: list[str]) -> str | None:
    """What the program's parser says about `argv` (None: accepted), as `main` parses it."""
    program, args = PurePosixPath(argv[0]).name, argv[1:]
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            if program == "bankgate-mcp":
                parser: argparse.ArgumentParser = mcp_parser()
                _, unknown = parser.parse_known_args(args)
                if [word for word in unknown if word != "--debug"]:  # main's only extra: --debug after the command
                    return f"unrecognized arguments: {unknown}"
            else:
                build_parser(args).parse_args(args)
    except SystemExit as exit_:
        return None if exit_.code == 0 else said.getvalue().strip().splitlines()[-1]
    return None


@pytest.mark.parametrize("shown", SHOWN, ids=[f"{s.where} {' '.join(s.argv)[:60]}" for s in SHOWN])
def test_each_command_line_shown_is_accepted(shown: Shown) -> None:
    said = _parse(shown.argv)
    if said is not None and not shown.whole:
        assert "the following arguments are required" in said, f"{shown.where}: {shown.argv}: {said}"
    else:
        assert said is None, f"{shown.where}: {shown.argv}: {said}"


def test_the_docs_show_command_lines_of_both_programs() -> None:
    """Guards the reader itself: it finds the README's commands, from blocks, prompts and prose."""
    whole = {s.argv[0] for s in SHOWN if s.whole}
    assert whole >= {
        "bankgate-mcp",
        "bankgate-agent",
        ".venv/bin/bankgate-agent",
        "/path/to/bankgate/.venv/bin/bankgate-mcp",
    }
    assert any(s.argv[1:3] == ["audit", "verify"] and "--db" in s.argv for s in SHOWN)  # a `$ ` prompt
    assert any(not s.whole for s in SHOWN)
