"""The documentation's links and index: every relative link in the README, docs/ and the results' READMEs points
at a file or folder of this repository, and every results folder is listed in reports/README.md."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
PAGES = sorted([ROOT / "README.md", ROOT / "reports" / "README.md", *(ROOT / "docs").glob("*.md"),
                *(ROOT / "reports" / "results").glob("*/README.md")])


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links in code blocks are examples
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


def test_every_results_folder_is_in_the_reports_index():
    index = (ROOT / "reports" / "README.md").read_text()
    folders = sorted(p.name for p in (ROOT / "reports" / "results").iterdir() if p.is_dir())
    assert folders, "no results folders found"
    missing = [f for f in folders if f"(results/{f}/)" not in index]
    assert not missing, f"reports/README.md does not list: {missing}"


def test_the_link_finder_finds_what_it_should(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](x.md) ![b](img/y.png) [c](https://e.org) [d](#top) [e](z.md#sec)\n```\n[f](nope.md)\n```\n")
    assert relative_links(page) == ["x.md", "img/y.png", "z.md#sec"]


def test_the_readme_shows_the_committed_summarys_headline():
    """A headline block in the README exactly when reports/final_summary.md is committed, and then its table."""
    from sdtp_lib.workspace.report import README_END, headline_rows, with_headline
    readme, summary = (ROOT / "README.md").read_text(), ROOT / "reports" / "final_summary.md"
    assert (README_END in readme) == summary.exists(), "README headline block and reports/final_summary.md go together"
    if summary.exists():
        assert with_headline(readme, summary.read_text()) == readme, \
            "README's headline differs from reports/final_summary.md's (scripts/slim_run.sh's README= copies it)"
        assert "(reports/final_summary.md)" in readme
