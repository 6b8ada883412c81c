"""The words a query says to a site: one for every check, none addressed to the steward."""

from __future__ import annotations

import re

import pytest

from blinaetl.ingest.sources import load_sources
from blinaetl.reports.outbox import check_words, load_site_text, rule_words
from blinaetl.validate.contracts import load_contracts

CONTRACTS = load_contracts()
CHECKS = [(c, t) for t in CONTRACTS.values() for c in t.checks]
STEWARD_WORDS = re.compile(r"mapping|steward|contract|quarantin|pipeline|blinaetl", re.I)


@pytest.mark.parametrize("check,contract", CHECKS, ids=[c.id for c, _ in CHECKS])
def test_every_check_has_site_words_that_do_not_speak_to_the_steward(check, contract):
    expected, fix = check_words(load_site_text(), check, contract, {})
    assert expected and fix
    assert "{" not in expected + fix, "every placeholder filled"
    assert not STEWARD_WORDS.search(expected + fix), (check.id, expected, fix)


def test_the_words_use_the_sites_own_column_names():
    site02 = next(s for s in load_sources(None, CONTRACTS) if s.source == "site02_clinical")
    fm = next(f for f in site02.files if f.table == "assessments")
    check = next(c for c in CONTRACTS["assessments"].checks if c.id == "ASM_AFTER_DX")
    expected, fix = check_words(load_site_text(), check, CONTRACTS["assessments"], fm.columns)
    assert fm.columns["assessment_date"] != "assessment_date"
    assert expected.startswith(fm.columns["assessment_date"] + " on or after")
    rng = next(c for c in CONTRACTS["assessments"].checks if c.id == "ASM_PLT_RANGE")
    expected, fix = check_words(load_site_text(), rng, CONTRACTS["assessments"], fm.columns)
    assert expected == "a number from 0 to 2000 10^9/L"
    assert "mapping" in rng.message and "mapping" not in fix


def test_file_level_rules_name_the_problem_without_the_stewards_fix():
    error = "x.csv: required column(s) 'MRN' not found (for mrn). Fix: correct 'columns' in the source mapping"
    expected, fix = rule_words(load_site_text(), "FILE_REJECTED", error)
    assert "required column(s) 'MRN' not found" in fix
    assert "source mapping" not in fix and expected


def test_a_sheet_lists_at_most_the_cap_per_site_and_table_and_the_cover_counts_the_rest(tmp_path):
    import openpyxl
    import polars as pl

    from blinaetl.reports.outbox import write_workbook
    from blinaetl.reports.roundtrip import cap_rows

    live = pl.DataFrame(
        {
            "query_id": [f"Q{i}" for i in range(7)],
            "sender": ["S1"] * 5 + ["S2"] * 2,
            "table_name": ["assessments"] * 3 + ["outcomes"] * 2 + ["assessments"] * 2,
            "source_file": ["a.csv"] * 7,
            "source_row": [9, 3, 5, 2, 1, 4, 8],
            "rule_id": ["R"] * 7,
        }
    )
    shown = cap_rows(live, 2)
    by = {(s, t): sorted(g["source_row"]) for (s, t), g in shown.group_by("sender", "table_name")}
    assert by == {
        ("S1", "assessments"): [3, 5],
        ("S1", "outcomes"): [1, 2],
        ("S2", "assessments"): [4, 8],
    }
    rows = shown.filter(pl.col("sender") == "S1").with_columns(
        status=pl.lit("new"),
        **{c: pl.lit(None, pl.Utf8) for c in ("opened_on", "age_runs", "age_days", "patient_ref",
           "record_date", "column", "delivered_value", "expected", "how_to_fix")},
    )  # fmt: skip
    path = write_workbook(tmp_path / "S1.xlsx", "S1", "r1", rows, not_listed=1)
    cover = openpyxl.load_workbook(path)["cover"]
    meta = {r[0]: r[1] for r in cover.iter_rows(max_row=8, values_only=True) if r[0]}
    assert meta["open_queries"] == "5" and meta["not_listed"] == "1"
    assert "1 more open queries are not listed" in cover.cell(7, 3).value


def test_a_rule_without_its_own_words_still_says_what_is_wrong():
    expected, fix = rule_words(load_site_text(), "SOME_NEW_RULE", "x.csv: 3 rows are odd")
    assert expected == "what was agreed for this extract"
    assert fix.startswith("x.csv: 3 rows are odd")
