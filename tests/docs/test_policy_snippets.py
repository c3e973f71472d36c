"""Every policy TOML the docs show passes `bankgate-mcp policy check` as a user would copy it.

A block is a whole policy unless the HTML comment above it (invisible when rendered) says otherwise:
`policy fragment: …` is checked added to a policy that names each tool (as a user adds it to theirs);
`policy excerpt: FILE` must also be a part of FILE, which must pass the check whole.
"""

import tomllib
from pathlib import Path
from typing import Any

import pytest

from mcp_server.cli.admin import policy_check
from mcp_server.tools import TOOL_ARGUMENTS
from policy.loader import PolicyError, load_policy
from tests.docs.markdown import ROOT, Block, all_blocks

SNIPPETS = all_blocks("toml")
FRAGMENT, EXCERPT = "policy fragment:", "policy excerpt:"
NAMES_EACH_TOOL = "".join(f'[tools.{tool}]\ndefault = "require_approval"\n\n' for tool in TOOL_ARGUMENTS)
"""The least a fragment is added to: every tool the server publishes, with a default."""


def _checked(text: str, tmp_path: Path) -> None:
    """`bankgate-mcp policy check` on `text` (raises PolicyError naming file:line and key), with no warning."""
    path = tmp_path / "my_policy.toml"
    path.write_text(text, encoding="utf-8")
    assert policy_check(path) == 0
    assert load_policy(path, catalog=TOOL_ARGUMENTS).warnings == ()


@pytest.mark.parametrize("block", SNIPPETS, ids=[b.where for b in SNIPPETS])
def test_each_policy_snippet_passes_policy_check(block: Block, tmp_path: Path) -> None:
    marker = block.marker or ""
    assert not marker or marker.startswith((FRAGMENT, EXCERPT)), f"{block.where}: unknown marker {marker!r}"
    if marker.startswith(FRAGMENT):
        _checked(NAMES_EACH_TOOL + block.text, tmp_path)
    else:
        try:
            _checked(block.text, tmp_path)
        except PolicyError as error:
            pytest.fail(f"{block.where}: {error}\n(a deliberately partial policy: mark it `<!-- {FRAGMENT} … -->`)")


def _within(part: Any, whole: Any) -> bool:
    """Whether `part` says nothing `whole` does not: tables key by key, arrays item by item (in order)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _within(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        rest = iter(whole) if isinstance(whole, list) else iter(())
        return all(any(item == other for other in rest) for item in part)
    return bool(part == whole)


@pytest.mark.parametrize("block", [b for b in SNIPPETS if (b.marker or "").startswith(EXCERPT)], ids=lambda b: b.where)
def test_an_excerpt_is_part_of_the_file_it_names(block: Block, tmp_path: Path) -> None:
    assert block.marker is not None
    file = ROOT / block.marker.removeprefix(EXCERPT).strip()
    _checked(file.read_text(encoding="utf-8"), tmp_path)
    assert _within(tomllib.loads(block.text), tomllib.loads(file.read_text(encoding="utf-8"))), block.where


def test_the_visibility_shown_as_the_shipped_policys_is_the_shipped_policys() -> None:
    (shown,) = [b for b in SNIPPETS if "the shipped policy's" in b.text]
    visible = tomllib.loads(shown.text)["accounts"]["visible"]
    shipped = load_policy(None, catalog=TOOL_ARGUMENTS).visible
    assert shipped is not None and shipped.source == visible


def test_the_docs_show_whole_policies_and_mark_every_partial_one() -> None:
    """Guards the markers themselves: the first example is a whole policy, and the partial ones say so."""
    whole = [b for b in SNIPPETS if b.marker is None]
    partial = [b for b in SNIPPETS if b.marker is not None]
    assert whole and partial
    assert whole[0].document == "README.md" and "[tools.transfer_funds]" in whole[0].text
