"""The `cel` package without its command line.

`cel/__init__.py` imports `cel.cli`, its REPL (typer, rich, prompt_toolkit, pygments): ~140 ms on
every process that evaluates a condition, `bankgate-mcp` included, which a desktop client starts
for each conversation. The evaluator needs none of it, so while the package loads its `cli`
submodule is a placeholder; it is removed again, so `import cel.cli` still loads the real one.

The engine also logs a WARNING of its own when a Python function a condition calls fails (`minor`),
then raises; `policy.expressions` turns the raise into the error that names the rule, so the
engine's line is dropped (`_engine_echo`), or `policy check` would print a stray line before it.
"""

import logging
import sys
from types import ModuleType


def _without_cli() -> ModuleType:
    if "cel" in sys.modules:
        return sys.modules["cel"]
    sys.modules["cel.cli"] = ModuleType("cel.cli")
    try:
        import cel
    finally:
        del sys.modules["cel.cli"]
    return cel


def _engine_echo(record: logging.LogRecord) -> bool:
    """False for the engine's own report of a failed Python function (the raise that follows is reported)."""
    return not record.getMessage().startswith("Python function ")


cel = _without_cli()
logging.getLogger("cel").addFilter(_engine_echo)
