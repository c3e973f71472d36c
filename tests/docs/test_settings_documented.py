"""The environment variables the docs name are the ones the code reads, and every setting is documented:
a variable the docs invent does nothing, and one they leave out is a switch nobody knows of. The README's
configuration table states each plain default as the settings define it, and each `serve` flag it names
beside a variable sets that variable's setting.
"""

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from agent_host.cli.serve import TOKEN_ENV
from agent_host.settings import HostSettings
from mcp_server.audit.keys import KEY_FILE_ENV
from mcp_server.cli.main import _parser as mcp_parser
from mcp_server.settings import Settings
from tests.docs.markdown import DOCUMENTS, ROOT, prose, text_of
from tests.drills.schedule import SECONDS_ENV, SEED_ENV
from tests.support import POSTGRES_URL_ENV, PROFILE_ENV

READ_ELSEWHERE = {
    TOKEN_ENV: "bankgate-agent serve's API token, read from the environment only (never .env)",
    KEY_FILE_ENV: "also a server setting; read by the key loader itself",
    POSTGRES_URL_ENV: "the tests' PostgreSQL server",
    PROFILE_ENV: "the tests' Hypothesis profile",
    SEED_ENV: "the seed the exploring drill replays",
    SECONDS_ENV: "how long the exploring drill's clients call",
    "BANKGATE_SCREENSHOTS": "where the browser tests save the README's screenshots (tests/desk/conftest.py)",
    "BANKGATE_AUTH": "the user's own variable in the mcp-remote example (Claude Desktop's env, not bankgate's)",
}
_NAME = re.compile(r"\bBANKGATE_[A-Z0-9_]*[A-Z0-9]\b")


def settings_variables() -> Iterator[tuple[str, FieldInfo]]:
    """Each setting's environment variable, as pydantic-settings reads it."""
    for name, field in Settings.model_fields.items():
        yield f"{Settings.model_config['env_prefix']}{name}".upper(), field
    for name, field in HostSettings.model_fields.items():
        alias = field.validation_alias
        yield alias if isinstance(alias, str) else f"{HostSettings.model_config['env_prefix']}{name}".upper(), field


SETTINGS = dict(settings_variables())
DOCS = "\n".join(text_of(document) for document in DOCUMENTS)


def test_every_variable_the_docs_name_is_read() -> None:
    invented = set(_NAME.findall(DOCS)) - set(SETTINGS) - set(READ_ELSEWHERE)
    assert not invented, f"the docs name variables nothing reads: {sorted(invented)}"


def test_every_setting_is_documented() -> None:
    missing = {name for name in SETTINGS if not re.search(rf"\b{name}\b", DOCS)}
    assert not missing, f"settings the docs never name: {sorted(missing)}"


def test_the_settings_read_elsewhere_are_read() -> None:
    """The exceptions above are real: each is read somewhere (else it belongs in neither list)."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in _sources())
    unread = {name for name in READ_ELSEWHERE if name != "BANKGATE_AUTH" and name not in sources}
    assert not unread


def _sources() -> Iterator[Path]:
    for package in ("mcp_server", "agent_host", "policy", "tests"):
        yield from (ROOT / package).rglob("*.py")


_ROW = re.compile(r"^\| `(BANKGATE_[A-Z0-9_]+)`[^|]*\| (true|false|[\d.]+|`(?!BANKGATE_)[\w.]+`) \|")
"""A row whose default is a literal (not another variable, not prose)."""


def _table_defaults() -> list[tuple[int, str, str]]:
    return [(n, m.group(1), m.group(2).strip("`")) for n, line in prose("README.md") if (m := _ROW.match(line))]


@pytest.mark.parametrize(("line", "name", "shown"), _table_defaults(), ids=lambda v: str(v))
def test_the_configuration_table_states_each_plain_default(line: int, name: str, shown: str) -> None:
    default = SETTINGS[name].get_default(call_default_factory=True)
    if isinstance(default, bool):
        matches = str(default).lower() == shown
    elif isinstance(default, int | float):
        matches = float(shown) == default
    else:
        matches = str(default) == shown
    assert matches, f"README.md:{line}: {name} defaults to {default!r}, the table says {shown}"


_FLAGGED = re.compile(r"^\| `(BANKGATE_[A-Z0-9_]+)`(?:, `BANKGATE_[A-Z0-9_]+`)? \(([^)]*)\)")


def _serve_options() -> dict[str, str]:
    """`bankgate-mcp serve`'s options and the setting each sets."""
    (commands,) = [a for a in mcp_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {option: action.dest for action in commands.choices["serve"]._actions for option in action.option_strings}


def _flagged_rows() -> list[tuple[int, str, str]]:
    rows = [(n, m.group(1), m.group(2)) for n, line in prose("README.md") if (m := _FLAGGED.match(line))]
    server = {f"BANKGATE_{name}".upper() for name in Settings.model_fields}
    return [(n, name, flag) for n, name, flags in rows if name in server for flag in re.findall(r"--[a-z-]+", flags)]


@pytest.mark.parametrize(("line", "name", "flag"), _flagged_rows(), ids=lambda v: str(v))
def test_each_flag_in_the_configuration_table_sets_its_variables_setting(line: int, name: str, flag: str) -> None:
    assert _serve_options().get(flag) == name.removeprefix("BANKGATE_").lower(), f"README.md:{line}: {flag}"
