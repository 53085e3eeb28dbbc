"""Every relative link of the README and the docs (reference pages and docs/notes/) points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_relative_link_resolves() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "benchmarks").rglob("*.md")]
    assert len(pages) > 10
    broken = []
    for page in pages:
        for match in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            target = match.group(1)
            if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_reference_pages_and_notes_are_apart() -> None:
    """docs/ holds reference pages; experiment logs (tuning, probes, one-off results) live in docs/notes/."""
    notes = {p.name for p in (ROOT / "docs" / "notes").iterdir()}
    assert {"grpo-tuning.md", "opd-tuning.md", "teachers-tiny.md"} <= notes
    assert not any(name.endswith("-tuning.md") for name in (p.name for p in (ROOT / "docs").glob("*.md")))
