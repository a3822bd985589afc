"""The README and docs/ as a clone has them: nothing points out of the
repository, and every example a person copies follows the port variables."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "infra" / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
# The local stack's ports, as an example would hard-code them.
LOCAL_URL = re.compile(r"(?:localhost|127\.0\.0\.1):(\d+)")
VARIABLE_DEFAULT = re.compile(r"\$\{[A-Z_]+:-\d+\}")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def examples(text: str):
    yield from FENCE.findall(text)
    # An indented block (four spaces after a blank line) is an example too.
    yield from re.findall(r"(?m)(?:^    .*\n)+", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_links_out_of_the_repository(page):
    text = page.read_text()
    assert "../shared" not in text
    # A markdown link is relative to its page; a path named in backticks, to the repository.
    links = [(page.parent, target) for target in re.findall(r"\]\(([^)]+)\)", text) if "://" not in target]
    named = [(ROOT, target) for target in re.findall(r"`((?:\.\./)*[\w-]+(?:/[\w.-]+)*\.md)`", text)]
    for base, target in links + named:
        path = (base / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), (page.name, target)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_follows_the_port_variables(page):
    for example in examples(page.read_text()):
        for line in example.splitlines():
            bare = VARIABLE_DEFAULT.sub("", line)
            assert not LOCAL_URL.search(bare), (page.name, line)


def test_the_readme_reads_in_ten_minutes():
    # About 200 words a minute for prose with commands in it.
    assert len((ROOT / "README.md").read_text().split()) <= 2000
