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


# every path, module and interface table the page names is the real one

ROOT = DOC.parent.parent
# the checkout's own top-level entries; what `make run` writes beside them (demo/, warehouse/,
# reports/, landing/) are run-time paths, not repository paths
RUN_TIME = {"demo", "warehouse", "reports", "landing"}
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} - RUN_TIME
PLACEHOLDER = re.compile(r"[<>{}]|\.\.\.")


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def repo_paths(text: str) -> list[str]:
    """Repository paths the text names: in backticks, or in a code block's first columns.

    A word counts when its first part is a top-level entry of the repository (`blinaetl/...`,
    `sql/...`, `tests/...`); run-time paths (`landing/`, `warehouse/...`, `reports/<run_id>/`)
    and templates with placeholders (`sql/<layer>/<NN>_<model>.sql`) do not."""
    words = [w for span in re.findall(r"`([^`\n]+)`", text) for w in span.split()]
    for block in re.findall(r"```\n(.*?)```", text, flags=re.S):
        words += block.split()
    found = []
    for word in words:
        path = word.split("::")[0].rstrip(".,;:)").lstrip("(")
        if PLACEHOLDER.search(path) or path.split("/")[0] not in TOP_LEVEL:
            continue
        if "/" in path or path in TOP_LEVEL:
            found.append(path)
    return sorted(set(found))


def test_repo_paths_finds_repo_paths_and_skips_run_time_paths_and_templates() -> None:
    text = (
        "`blinaetl/ingest/` and `sql/harmonized/41_x.sql`, `tests/test_a.py::test_b`, "
        "`warehouse/blina.duckdb`, `sql/<layer>/<NN>_<model>.sql`, `reports/<run_id>/`\n"
        "```\n  ingest     blinaetl/ingest/    landing.py\n  harmonize  sql/harmonized/*.sql\n```\n"
    )
    assert repo_paths(text) == [
        "blinaetl/ingest/",
        "sql/harmonized/*.sql",
        "sql/harmonized/41_x.sql",
        "tests/test_a.py",
    ]


def test_every_repo_path_the_page_names_exists() -> None:
    paths = repo_paths(_doc_text())
    assert len(paths) > 40, "the page names its paths in backticks"
    missing = [p for p in paths if not (list(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    assert missing == []


def test_every_engine_module_is_named_on_the_page() -> None:
    text = _doc_text()
    package = ROOT / "blinaetl"
    modules = [
        p for p in package.rglob("*.py") if p.name != "__init__.py" and "_resources" not in p.parts
    ]
    unnamed = sorted(
        p.relative_to(ROOT).as_posix()
        for p in modules
        if not re.search(rf"\b{re.escape(p.name)}\b", text)
    )
    assert unnamed == []


def _interface_rows() -> list[tuple[str, str, list[str]]]:
    text = _doc_text()
    section = text[text.index("## Interface tables between SQL models") : text.index("## How to")]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`harmonized."):
            continue
        model = re.fullmatch(r"`(sql/[^`]+\.sql)`", cells[1])
        if model is None:  # written by Python, not a model
            continue
        columns = [c.strip().split(" ")[0] for c in cells[2].split(",")]
        rows.append((cells[0].strip("`"), model.group(1), columns))
    return rows


def test_each_interface_table_is_made_by_the_model_named_with_the_columns_named() -> None:
    from tests.sqlharness import open_database

    rows = _interface_rows()
    assert len(rows) >= 15
    con = open_database(ROOT / "sql")
    try:
        wrong = []
        for table, model, columns in rows:
            created = re.findall(
                r"CREATE OR REPLACE (?:TABLE|VIEW) ([\w.]+)", (ROOT / model).read_text()
            )
            if created != [table]:
                wrong.append(f"{model} creates {created}, not {table}")
                continue
            schema, name = table.split(".")
            actual = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() "
                    "WHERE schema_name = ? AND table_name = ?",
                    [schema, name],
                ).fetchall()
            }
            named = {c for c in columns if re.fullmatch(r"[a-z_][a-z0-9_]*", c)}
            if named - actual:
                wrong.append(f"{table}: no column {sorted(named - actual)}")
    finally:
        con.close()
    assert wrong == []
