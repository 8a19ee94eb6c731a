"""The documentation points at files that exist: every ``docs/*.md`` named in the code, every relative link of
the README and of ``docs/``, and no reference to design notes that are not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for d in ("bench", "baselines", "methods", "tests", "studies") for p in (ROOT / d).rglob("*")
        if p.suffix in {".py", ".yaml"}]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_docs_page_named_in_the_code_exists():
    named = {m for p in CODE for m in re.findall(r"docs/[A-Za-z_]+\.md", p.read_text())}
    assert named, "the code names no docs page: the pattern is wrong"
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"named in the code but not in the repository: {missing}"


def test_no_reference_to_design_notes_outside_the_repository():
    stray = re.compile(r"(?<![/\w])(DATA|STATS|METHODS|DESIGN|STYLE)\.md")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in CODE + PAGES
            for i, line in enumerate(p.read_text().splitlines(), 1) if stray.search(line)]
    assert not hits, hits


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    broken = [link for link in local if not (page.parent / link).exists()]
    assert not broken, f"{page.name}: {broken}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
