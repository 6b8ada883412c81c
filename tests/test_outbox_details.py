"""What a query row shows the site: its own column names and the values it delivered.

A small restricted database written by hand (one quarantined row, one loaded row, one file
rule) and the site02 mapping, whose column names differ from the canonical ones; expected
cells are written from the mapping and the rows below, not from the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from blinaetl.ingest.sources import load_sources
from blinaetl.reports.outbox import delivered_details
from blinaetl.validate.contracts import load_contracts

CONTRACTS = load_contracts()
SOURCES = load_sources(None, CONTRACTS)
FILE = "clinical/SITE02/assessments_20260901.csv"


def _restricted(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA quarantine")
    con.execute(
        "CREATE TABLE quarantine.rows (_source_id VARCHAR, _source_file VARCHAR, "
        "_source_row BIGINT, table_name VARCHAR, site VARCHAR, patient_key VARCHAR, "
        "raw_json VARCHAR)"
    )
    delivered = {"Patient ID": "55-000111", "Date": "", "Response": "C R", "Extra": "=1+1"}
    con.execute(
        "INSERT INTO quarantine.rows VALUES "
        "('site02_clinical', ?, 7, 'assessments', 'SITE02', 'k1', ?), "
        "('site02_clinical', ?, 9, 'assessments', 'SITE02', 'k2', NULL)",
        [FILE, json.dumps(delivered), FILE],
    )
    fields = CONTRACTS["assessments"].field_names
    con.execute("CREATE SCHEMA staging")
    con.execute(
        "CREATE TABLE staging.assessments (_source_file VARCHAR, _source_row BIGINT, "
        + ", ".join(f"{f} VARCHAR" for f in fields)
        + ")"
    )
    loaded = {"mrn": "55-000222", "assessment_date": "2026-08-30", "reported_response": "CRR"}
    con.execute(
        f"INSERT INTO staging.assessments (_source_file, _source_row, {', '.join(loaded)}) "
        "VALUES (?, 8, ?, ?, ?)",
        [FILE, *loaded.values()],
    )
    con.close()
    return path


def _queries() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "query_id": ["Q1", "Q2", "Q3", "Q4"],
            "source_id": ["site02_clinical"] * 4,
            "table_name": ["assessments", "assessments", "assessments", None],
            "source_file": [FILE, FILE, FILE, "clinical/SITE02/bad.csv"],
            "source_row": [7, 8, 9, None],
            "rule_id": ["ASM_UNIQUE", "ASM_RESPONSE_SET", "ASM_RESPONSE_SET", "FILE_REJECTED"],
            "field": [None, "reported_response", "reported_response", None],
            "message": ["m", "m", "m", "the file is not UTF-8"],
        },
        schema_overrides={"source_row": pl.Int64},
    )


def test_details_show_the_sites_names_and_the_delivered_values(tmp_path: Path) -> None:
    details = delivered_details(_restricted(tmp_path / "r.duckdb"), _queries(), CONTRACTS, SOURCES)
    got = {
        r["query_id"]: r
        for r in details.select(
            "query_id", "patient_ref", "record_date", "column", "delivered_value"
        ).iter_rows(named=True)
    }
    assert details["query_id"].to_list() == ["Q1", "Q2", "Q3", "Q4"]
    # a check on two columns, quarantined row: both by the site's name, the empty date empty
    assert got["Q1"] == {
        "query_id": "Q1",
        "patient_ref": "55-000111",
        "record_date": "",
        "column": "Patient ID, Date",
        "delivered_value": "Patient ID=55-000111; Date=",
    }
    # a warning on a loaded row: the value as loaded
    assert got["Q2"] == {
        "query_id": "Q2",
        "patient_ref": "55-000222",
        "record_date": "2026-08-30",
        "column": "Response",
        "delivered_value": "CRR",
    }
    # a quarantined row whose delivered values are missing: nothing shown, nothing invented
    assert got["Q3"] == {
        "query_id": "Q3",
        "patient_ref": None,
        "record_date": None,
        "column": "Response",
        "delivered_value": None,
    }
    # a file rule: no record, no column
    assert got["Q4"] == {
        "query_id": "Q4",
        "patient_ref": None,
        "record_date": None,
        "column": None,
        "delivered_value": None,
    }
    q4 = details.row(3, named=True)
    assert "the file is not UTF-8" in q4["how_to_fix"]


def test_details_without_a_restricted_database_show_only_the_words(tmp_path: Path) -> None:
    details = delivered_details(tmp_path / "absent.duckdb", _queries(), CONTRACTS, SOURCES)
    assert details["column"].to_list() == ["Patient ID, Date", "Response", "Response", None]
    # several columns name each, with nothing after `=`; one column shows nothing
    assert details["delivered_value"].to_list() == ["Patient ID=; Date=", None, None, None]
    assert details["expected"].null_count() == 0
