"""The docs hold no placeholder and every picture they show exists.

A page written before its figures were measured once kept a bare
``BENCH_TABLE`` line for months; a picture link to a file never added shows a
broken image. Both are easy to leave behind and easy to check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

#: a line that is one upper-case word with underscores and nothing else
PLACEHOLDER = re.compile(r"^\s*[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\s*$")
#: markdown images: ![alt](target)
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, numbered from 1."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_placeholder_line(page):
    found = [f"{page.name}:{n}: {line.strip()}" for n, line in _prose_lines(page.read_text())]
    found = [f for f in found if PLACEHOLDER.match(f.split(": ", 1)[1])]
    assert not found, "placeholders left in the docs:\n" + "\n".join(found)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_picture_exists(page):
    missing = []
    for _, line in _prose_lines(page.read_text()):
        for target in IMAGE.findall(line):
            if "://" in target:
                continue
            if not (page.parent / target.split("#")[0]).is_file():
                missing.append(target)
    assert not missing, f"{page.name} shows pictures that are not there: {missing}"


def test_the_placeholder_rule_matches_what_it_should():
    assert PLACEHOLDER.match("BENCH_TABLE") and PLACEHOLDER.match("  MONITOR_RUN ")
    assert not PLACEHOLDER.match("ATTUNEMENT_SHARED=../shared pytest")
    assert not PLACEHOLDER.match("| BENCH_TABLE |") and not PLACEHOLDER.match("README")
