"""Every relative link in README.md and docs/*.md leads somewhere: the file exists and, for a
``#anchor``, the page has a heading with that GitHub slug (the docs are split over pages, so an
anchor left pointing at the page it moved from would otherwise go stale unnoticed)."""

import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+).*?\1")
LINK = re.compile(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target "title"), and ![alt](target)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a shell block is not a heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation dropped, spaces → ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("*", "")
    return "".join(c for c in text.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's slug; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text()):
        if match := HEADING.match(line):
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for line in prose_lines(page.read_text())
        for target in LINK.findall(INLINE_CODE.sub("", line))
        if not EXTERNAL.match(target)
    ]


def broken(page: Path, root: Path = REPO_ROOT) -> list[str]:
    """``target: why`` for each link of ``page`` that leads nowhere."""
    problems = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no file {os.path.relpath(linked, root)}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no heading #{anchor} in {linked.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_points_at_a_file_and_a_heading(page):
    assert broken(page) == []


def test_the_readme_links_every_docs_page():
    linked = {(REPO_ROOT / t.partition("#")[0]).resolve() for t in relative_links(REPO_ROOT / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Python client and CLI", "python-client-and-cli"),
        (
            "Current code: a full run on the 2-core AMD EPYC VM (2026-12-03)",
            "current-code-a-full-run-on-the-2-core-amd-epyc-vm-2026-12-03",
        ),
        ("`MLQUEUE_API_KEYS` and *scopes*", "mlqueue_api_keys-and-scopes"),
        ("More machines and Redis failover", "more-machines-and-redis-failover"),
    ],
)
def test_slugs_are_githubs(heading, expected):
    assert slug(heading) == expected


def test_the_check_finds_a_missing_file_a_missing_heading_and_ignores_code(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Kept heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#kept-heading) [ok](#page) [ok](https://example.com/x.md#nope)\n"
        "[gone](missing.md) [stale](other.md#moved-away) [here](#nowhere)\n"
        "`[in code](nothing.md)`\n\n"
        "```sh\n# not a heading\n[in a fence](nothing.md)\n```\n"
    )
    assert broken(page, tmp_path) == [
        "missing.md: no file missing.md",
        "other.md#moved-away: no heading #moved-away in other.md",
        "#nowhere: no heading #nowhere in page.md",
    ]
