"""The README's "Test your own policy" example runs as written, with `my_policy.toml` the README's example
policy (as it says), on both protocol revisions."""

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.docs.markdown import all_blocks, blocks

(EXAMPLE,) = [b for b in blocks("README.md") if b.language == "python"]
MY_POLICY = next(b for b in all_blocks("toml") if b.marker is None)
"""The first whole policy the README shows: the one `my_policy.toml` names."""


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_policy_test_example_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    (tmp_path / "my_policy.toml").write_text(MY_POLICY.text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the example names its policy by a relative path
    namespace: dict[str, Any] = {}
    exec(compile(EXAMPLE.text, EXAMPLE.where, "exec"), namespace)
    anyio.run(namespace["test_large_transfers_need_approval"], tmp_path, mode)
