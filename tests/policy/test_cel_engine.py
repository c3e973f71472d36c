"""The CEL evaluator loads without the `cel` package's REPL, which stays importable."""

import subprocess
import sys

PROBE = """
import sys
from policy.expressions import Condition
assert Condition.compile("amount_minor > 1").program is not None
heavy = sorted(name for name in ("typer", "rich", "prompt_toolkit", "pygments") if name in sys.modules)
import cel.cli
print(heavy, cel.cli.__name__, hasattr(cel.cli, "app"))
"""


def test_evaluating_conditions_imports_no_repl_and_the_real_cli_still_loads() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] cel.cli True", done.stdout + done.stderr
