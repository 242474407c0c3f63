"""Design facts live in the repository: every ``docs/design.md#section`` cited exists; nothing cites outside files."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = ("fastpoly", "kernels", "bench", "tests")


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _files():
    for d in CITED:
        for p in sorted((ROOT / d).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".cu", ".cuh", ".md", ".sh") and "build" not in p.parts:
                yield p
    yield ROOT / "README.md"


def test_cited_sections_exist():
    anchors = {_slug(h) for h in re.findall(r"^##+ (.+)$", (ROOT / "docs" / "design.md").read_text(), re.M)}
    cited = {}
    for p in _files():
        if p.name == Path(__file__).name:
            continue
        for a in re.findall(r"docs/design\.md#([\w-]+)", p.read_text(errors="replace")):
            cited.setdefault(a, p.relative_to(ROOT))
    assert cited, "no citations found"
    missing = {a: str(p) for a, p in cited.items() if a not in anchors}
    assert not missing, f"cited sections missing from docs/design.md: {missing}"


def test_no_package_file_cites_a_file_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in _files()
                 if p.name != Path(__file__).name and "REFERENCE.md" in p.read_text(errors="replace")]
    assert not offenders, f"cite docs/design.md instead of REFERENCE.md: {offenders}"
