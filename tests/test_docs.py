"""The docs agree with each other and with the code: links resolve, the settings table is Settings', README is short.

Links: every relative link in README.md and docs/*.md points at a file that exists, and every ``#anchor`` at a
heading of that file, slugged as GitHub slugs headings (lower case, punctuation dropped, spaces to hyphens, ``-1``
for a repeated heading). Links inside code are not links and are skipped.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sadtalker.worker.settings import Settings
from tests.support import REPO_ROOT

ROOT = REPO_ROOT
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README] + DOCS
CONFIGURATION = ROOT / "docs" / "configuration.md"
README_MAX_BYTES = 10 * 1024  # issue 20: the README is a first page, read in five minutes

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^()\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The markdown without fenced blocks and inline code spans, where a ``](`` is not a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: links reduced to their text, code marks and punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's ``-1``, ``-2`` for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> Iterator[tuple[str, Path, str]]:
    """(link as written, target file, anchor or "") for each link that is not a URL."""
    for link in _LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        yield link, (page.parent / path).resolve() if path else page, anchor


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``page`` (paths relative to ``root``); empty when all resolve."""
    problems = []
    for link, target, anchor in relative_links(page):
        if not target.exists():
            problems.append(f"{link}: no file {target.relative_to(root.resolve())}")
        elif anchor and (target.suffix != ".md" or anchor not in anchors(target)):
            problems.append(f"{link}: no heading with anchor #{anchor} in {target.relative_to(root.resolve())}")
    return problems


def test_slug_follows_githubs_rules() -> None:
    assert slug("GFPGAN's inference path") == "gfpgans-inference-path"
    assert slug("CPU: pipeline benchmark") == "cpu-pipeline-benchmark"
    assert slug("`extcrop` and `extfull`") == "extcrop-and-extfull"
    assert slug("Long audio and the execution timeout") == "long-audio-and-the-execution-timeout"


def test_the_link_check_finds_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    """The checker itself fails on what it is meant to catch, and passes a good link and a link inside code."""
    (tmp_path / "other.md").write_text("# Title\n## Some part\n## Some part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#some-part) [repeat](other.md#some-part-1) [self](#here) `[code](missing.md)`\n"
        "# Here\n[gone](missing.md) [bad anchor](other.md#nowhere)\n```\n[fenced](missing.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no file missing.md",
        "other.md#nowhere: no heading with anchor #nowhere in other.md",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_readme_is_under_10_kb() -> None:
    assert len(README.read_bytes()) < README_MAX_BYTES


def test_readme_indexes_every_page_of_docs() -> None:
    linked = {target for _, target, _ in relative_links(README)}
    assert [page.name for page in DOCS if page not in linked] == []


def code_blocks(language: str) -> Iterator[tuple[str, str]]:
    """(where, code) of every fenced block in ``language`` in README and docs (indented fences included)."""
    fence = re.compile(rf"^( *)```{language}\n(.*?)^\1```", re.M | re.S)
    for page in PAGES:
        for index, (indent, block) in enumerate(fence.findall(page.read_text())):
            code = "".join(line[len(indent) :] for line in block.splitlines(keepends=True))
            yield f"{page.name} {language} block {index}", code


def test_python_examples_compile() -> None:
    """A copy-pasted Python example at least parses."""
    blocks = list(code_blocks("python"))
    assert blocks
    for where, code in blocks:
        compile(code, where, "exec")


def test_json_examples_parse() -> None:
    """The request and result examples are JSON, as a client would send or receive them."""
    blocks = list(code_blocks("json"))
    assert blocks
    for where, code in blocks:
        try:
            json.loads(code)
        except json.JSONDecodeError as error:
            pytest.fail(f"{where}: {error}")


def settings_table() -> dict[str, str]:
    """docs/configuration.md's environment table: variable -> the default as written."""
    section = CONFIGURATION.read_text().split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section, re.M)
    return {name: default.strip() for name, default in rows}


def test_every_variable_read_by_from_env_has_a_row() -> None:
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', inspect.getsource(Settings.from_env)))
    assert read and read == set(settings_table())


def test_each_documented_default_is_the_codes_default() -> None:
    for name, default in settings_table().items():
        value = "" if default == "(empty)" else default.strip("`")
        assert Settings.from_env({name: value}) == Settings.from_env({}), name
