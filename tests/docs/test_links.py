"""Every link the docs make inside the repo resolves: files and images (relative to the document), the
README's section anchors, and the repo paths named in inline code (`policy/mcp/round.ask`: a module and a
name defined in it)."""

import re

import pytest

from tests.docs.markdown import DOCUMENTS, ROOT, inline_code, prose

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_PATH = re.compile(r"((?:[\w-]+/)+)([\w-]*)((?:\.\w+)*)/?")
_TOP = {path.name for path in ROOT.iterdir() if path.is_dir() and not path.name.startswith(".")}


def _prose_text(document: str) -> str:
    return "\n".join(line for _, line in prose(document))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(document: str) -> set[str]:
    return {_anchor(line.lstrip("#")) for _, line in prose(document) if line.startswith("#")}


LINKS = [(d, target) for d in DOCUMENTS for target in _LINK.findall(_prose_text(d)) if "://" not in target]


@pytest.mark.parametrize(("document", "target"), LINKS, ids=[f"{d} {t}" for d, t in LINKS])
def test_each_link_resolves(document: str, target: str) -> None:
    path, _, anchor = target.partition("#")
    linked = (ROOT / document).parent / path if path else ROOT / document
    assert linked.exists(), f"{document}: no {target}"
    if anchor:
        assert anchor in _anchors(str(linked.relative_to(ROOT))), f"{document}: no heading for #{anchor}"


NAMED = [
    (d, n, code)
    for d in DOCUMENTS
    for n, code in inline_code(d)
    if _PATH.fullmatch(code) and code.split("/")[0] in _TOP
]


@pytest.mark.parametrize(("document", "line", "code"), NAMED, ids=[f"{d}:{n} {c}" for d, n, c in NAMED])
def test_each_repo_path_named_exists(document: str, line: int, code: str) -> None:
    match = _PATH.fullmatch(code)
    assert match is not None
    folder, leaf, dotted = match.groups()
    if (ROOT / folder / (leaf + dotted)).exists():
        return
    module = ROOT / folder / f"{leaf}.py"
    assert module.exists(), f"{document}:{line}: no {code}"
    if dotted:
        name = dotted.split(".")[1]
        defined = re.compile(rf"^\s*(?:async def|def|class) {name}\b|^{name}\b\s*[:=]", re.MULTILINE)
        assert defined.search(module.read_text(encoding="utf-8")), f"{document}:{line}: {module} defines no {name}"


def test_the_docs_link_files_images_and_sections() -> None:
    """Guards the reader: it finds the README's links of every kind."""
    targets = [t for _, t in LINKS]
    assert any(t.endswith(".png") for t in targets) and any(t.startswith("#") for t in targets)
    assert "docs/DEPLOYMENT.md" in targets and len(NAMED) > 10
