"""The README's quick start is what CI runs: the same install, the same test command, and a program that
the install puts on the path. (`.ci/run` itself checks that the README still shows its test command.)"""

import re
import tomllib

from tests.docs.markdown import ROOT, blocks

QUICK_START = blocks("README.md")[0]
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _commands() -> list[list[str]]:
    """The quick start's command lines, each split at `&&`."""
    lines = [line for line in QUICK_START.text.splitlines() if line.strip() and not line.startswith("#")]
    return [[part.strip() for part in line.split("&&")] for line in lines]


def _ci_test_command() -> list[str]:
    found = re.search(r'^TEST_COMMAND="(.*)"$', CI, re.MULTILINE)
    assert found is not None, ".ci/run no longer names its TEST_COMMAND"
    return [part.strip() for part in found.group(1).split("&&")]


def test_the_quick_start_is_an_install_then_run_and_the_test_command() -> None:
    assert QUICK_START.language == "bash"
    install_and_run, tests = _commands()
    assert tests == _ci_test_command()
    assert install_and_run[:-1] == tests[:-1]  # the same install


def test_ci_installs_as_the_quick_start_does() -> None:
    """CI runs the install steps on lines of their own (with a pip upgrade between): the same commands."""
    *install, _ = _ci_test_command()
    ci_lines = {line.strip() for line in CI.splitlines()}
    assert set(install) <= ci_lines
    assert re.search(r'^eval "\$TEST_COMMAND"$', CI, re.MULTILINE)


def test_the_quick_start_runs_a_program_the_install_provides() -> None:
    program, *args = _commands()[0][-1].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert program.removeprefix(".venv/bin/") in scripts and args == ["demo"]
