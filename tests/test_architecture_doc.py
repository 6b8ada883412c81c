"""docs/architecture.md states the floors tests/test_layout.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_layout import FLOORS

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _doc_floors() -> list[tuple[str, ...]]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Layout: floors") : text.index("## Stage contracts")]
    floors = []
    for line in section.splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|(.*)\|\s*$", line)
        if row:
            names = re.findall(r"`(blinaetl[\w.]*?)(?:\.\*)?`", row.group(2))
            floors.append(tuple(names))
    return floors


def test_the_documented_floors_are_the_tested_floors():
    assert [set(f) for f in _doc_floors()] == [set(f) for f in FLOORS]
