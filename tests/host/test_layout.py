"""The package's shape, checked statically: the host library never imports the emulator, and one
import style and one docstring markup hold across `agent_host`."""

from __future__ import annotations

import ast
from pathlib import Path

import agent_host

PACKAGE = Path(agent_host.__file__).parent
LAUNCHERS = {"cli/emulator.py", "cli/offline.py"}
"""The CLI commands that start the emulator (`emulator`, and `demo`/`serve --demo` through the offline lab)."""


def _modules() -> dict[str, ast.Module]:
    return {path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py")}


def _imported(tree: ast.Module) -> set[str]:
    """Every module `tree` imports, at any depth (lazy imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def _is_emulator(module: str) -> bool:
    return module == "agent_host.emulator" or module.startswith("agent_host.emulator.")


def test_only_the_emulator_and_its_launchers_import_the_emulator() -> None:
    importers = {
        name
        for name, tree in _modules().items()
        if not name.startswith("emulator/") and any(_is_emulator(module) for module in _imported(tree))
    }

    assert importers == LAUNCHERS, "production host code must not import agent_host.emulator"


def test_imports_are_absolute() -> None:
    relative = {name: sorted(m for m in _imported(tree) if m.startswith(".")) for name, tree in _modules().items()}

    assert {name: found for name, found in relative.items() if found} == {}


_REST = ("``", ":class:`", ":meth:`", ":func:`", ":mod:`", ":data:`", ":attr:`")


def test_docstrings_use_markdown_backticks() -> None:
    """Markdown `code`, not reST double backticks or roles."""
    rest: dict[str, list[str]] = {}
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            text = node.value.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) else None
            if isinstance(text, str) and any(mark in text for mark in _REST):
                rest.setdefault(name, []).append(text.strip().splitlines()[0])

    assert rest == {}
