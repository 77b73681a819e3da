"""The repository describes itself: every relative link in its markdown files resolves.

Checked files: README.md, CHANGELOG.md, projects/*/README.md and docs/**/*.md. A link
``[text](target)`` (images and reference definitions ``[name]: target`` included) whose target
is not a URL must name an existing file or folder relative to the linking file; a
``#fragment`` on a markdown target must name one of its headings (GitHub's anchors).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    {
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        *ROOT.glob("projects/*/README.md"),
        *ROOT.glob("docs/**/*.md"),
    }
)

_INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _without_fences(text: str) -> str:
    """``text`` without fenced code blocks (no links or headings live there)."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)


def links(text: str) -> list[str]:
    """Link targets of a markdown text: inline links in order, then reference definitions."""
    # Inline code spans hold no links; inside link text ([`x`](y)) blanking them keeps the link.
    prose = re.sub(r"`[^`\n]*`", "``", _without_fences(text))
    refs, previous = [], ""
    for line in prose.splitlines():
        # A definition cannot interrupt a paragraph: it follows a blank line or a definition.
        match = _REFERENCE.match(line)
        if match and (not previous.strip() or _REFERENCE.match(previous)):
            refs.append(match.group(1))
        previous = line
    return [*_INLINE.findall(prose), *refs]


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors of a markdown text."""
    out = set()
    for heading in re.findall(
        r"^#{1,6}\s+(.+?)\s*#*\s*$", _without_fences(text), flags=re.MULTILINE
    ):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        out.add(slug.replace(" ", "-"))
    return out


def test_link_parser() -> None:
    text = (
        'See [a](docs/x.md#sec), ![fig](img.png "t") and [`code`](b/c.py).\n'
        "```\n[not](a-link.md)\n```\n`[no](link)` [web](https://e.org) [self](#top)\n"
        "sizes\n[5, 64]: not a definition\n\n[ref]: ../up.md\n"
    )
    assert links(text) == [
        "docs/x.md#sec",
        "img.png",
        "b/c.py",
        "https://e.org",
        "#top",
        "../up.md",
    ]
    assert anchors("# Top\n## 5. AutoFocus\n### The `x` rule\n") == {
        "top",
        "5-autofocus",
        "the-x-rule",
    }


def test_there_are_docs() -> None:
    assert ROOT / "docs" / "design.md" in DOCS and ROOT / "README.md" in DOCS


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if _EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif not dest.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif (
            fragment
            and dest.suffix == ".md"
            and fragment not in anchors(dest.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links: {broken}"
