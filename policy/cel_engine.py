"""The `cel` package without its command line.

`cel/__init__.py` imports `cel.cli`, its REPL (typer, rich, prompt_toolkit, pygments): ~140 ms on
every process that evaluates a condition, `bankgate-mcp` included, which a desktop client starts
for each conversation. The evaluator needs none of it, so while the package loads its `cli`
submodule is a placeholder; it is removed again, so `import cel.cli` still loads the real one.
"""

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


cel = _without_cli()
