"""The worked examples of docs/onboarding.md run as written: each example's mapping and files
are taken from the guide, ingested, and the counts (and, where the guide lists them, the rows)
the guide states are checked, with rows read = loaded + quarantined for every file. Mapping-only examples must load (and, when they name a
shipped file, be that file)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl
import pytest

from blinaetl.ingest.landing import ingest_landing
from blinaetl.ingest.sources import load_source
from blinaetl.privacy import DEMO_KEY

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "onboarding.md"
MARK = re.compile(r"<!-- example (\w+): (.*?) -->\n(?:```\w*\n(.*?)```)?", re.S)


def examples() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, what, body in MARK.findall(GUIDE.read_text(encoding="utf-8")):
        ex = out.setdefault(
            name, {"files": {}, "expect": {}, "rows": {}, "mapping": None, "only": None}
        )
        if what == "mapping":
            ex["mapping"] = body
        elif what.startswith("mapping-only"):
            ex["mapping"], ex["only"] = body, what.removeprefix("mapping-only").strip()
        elif what.startswith("file "):
            ex["files"][what.removeprefix("file ")] = body
        elif what.startswith("rows "):
            ex["rows"][what.removeprefix("rows ").strip()] = body
        elif what.startswith("expect "):
            rel, *counts = what.removeprefix("expect ").split()
            ex["expect"][rel] = {k: int(v) for k, v in (c.split("=") for c in counts)}
        else:
            raise AssertionError(f"docs/onboarding.md: unknown example marker {what!r}")
    return out


EXAMPLES = examples()


def test_the_guide_has_an_example_per_layout():
    assert set(EXAMPLES) >= {
        "not_collected",
        "where",
        "pivot",
        "unpivot",
        "site_from",
        "derived_dates",
        "sas",
        "redcap",
        "sdtm_rs",
        "sdtm_tr",
        "study_days",
    }


@pytest.mark.parametrize("name", sorted(n for n, e in EXAMPLES.items() if e["only"] is None))
def test_guide_example_runs_as_written(tmp_path, name):
    ex = EXAMPLES[name]
    assert ex["mapping"] and ex["files"] and ex["expect"], f"example {name} is incomplete"
    sources, landing = tmp_path / "sources", tmp_path / "landing"
    sources.mkdir()
    (sources / f"{name}.yaml").write_text(ex["mapping"])
    for rel, text in ex["files"].items():
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_text(text)
    result = ingest_landing(landing, "doc", DEMO_KEY, sources_dir=sources)
    for f in result.files.iter_rows(named=True):
        assert f["status"] not in ("rejected", "unmatched"), f
        assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"], f
    for rel, counts in ex["expect"].items():
        f = result.files.filter(pl.col("path") == rel).row(0, named=True)
        assert (f["rows_loaded"], f["rows_quarantined"]) == (
            counts["loaded"],
            counts["quarantined"],
        ), f
    for table, text in ex["rows"].items():
        want = pl.read_csv(io.StringIO(text), infer_schema=False).fill_null("")
        got = (
            result.tables[table]
            .sort("_source_file", "_source_row")
            .select([pl.col(c).cast(pl.Utf8).fill_null("") for c in want.columns])
        )
        assert got.rows() == want.rows(), f"example {name}: rows of {table}"


@pytest.mark.parametrize("name", sorted(n for n, e in EXAMPLES.items() if e["only"] is not None))
def test_guide_mapping_only_example_loads(tmp_path, name):
    ex = EXAMPLES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(ex["mapping"])
    assert load_source(path).files
    if ex["only"]:
        assert (ROOT / ex["only"]).read_text().split("source:", 1)[1] == ex["mapping"].split(
            "source:", 1
        )[1]
