"""End to end: generate a cohort, run the pipeline, compare what it recovered with the truth.

The truth is written by the generator from its simulated patients (an implementation of
docs/derivations.md independent of the SQL); the pipeline only sees the landing extracts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import polars as pl
import pytest

from blinaetl.privacy import patient_keys, resolve_secret

PATIENT_COLUMNS = [
    "patient_key",
    "site",
    "age_at_start",
    "sex",
    "ph_status",
    "prior_hct",
    "prior_lines",
    "bm_blasts_pct",
    "bm_blasts_gt50",
    "prior_em",
    "active_em_at_start",
    "cd19_baseline",
    "best_response",
    "responder",
    "response_source",
    "response_day",
    "mrd_negative",
    "hct_in_cr",
    "hct_day",
    "relapsed",
    "relapse_day",
    "relapse_evidence",
    "failure_type",
    "failure_pattern",
    "em_at_failure",
    "cd19_at_failure",
    "died",
    "os_days",
    "os_event",
    "efs_days",
    "efs_event",
    "rfs_days",
    "rfs_event",
]


def _norm(value: object) -> str:
    """One text form for truth CSV cells and database values (NULL -> '')."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    text = str(value).strip()
    low = text.lower()
    if low in {"true", "false"}:
        return low
    try:
        number = float(text)
    except ValueError:
        return text
    return _norm(number)


def _truth_with_keys(cohort: Path) -> pl.DataFrame:
    truth = pl.read_csv(cohort / "truth" / "patients.csv", infer_schema=False)
    keys = patient_keys(truth["site"], truth["mrn"], resolve_secret(demo=True))
    return truth.with_columns(keys.alias("patient_key")).drop("mrn")


def _agreement(cohort: Path, analytics: Path) -> dict[str, float]:
    truth = _truth_with_keys(cohort)
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        got = con.sql("SELECT * FROM curated.patients").pl()
    finally:
        con.close()
    assert got.height == truth.height, "one curated row per true patient"
    assert got["patient_key"].n_unique() == got.height
    got_rows = {r["patient_key"]: r for r in got.iter_rows(named=True)}
    shares = {}
    for col in PATIENT_COLUMNS:
        agree = sum(
            _norm(t[col]) == _norm(got_rows.get(t["patient_key"], {}).get(col))
            for t in truth.iter_rows(named=True)
        )
        shares[col] = agree / truth.height
    return shares


def test_demo_curated_patients_match_truth(demo_run):
    cohort, cfg, _ = demo_run
    shares = _agreement(cohort, cfg.analytics_path)
    below = {c: round(s, 4) for c, s in shares.items() if s < 0.99}
    assert not below, f"columns agreeing with the truth in fewer than 99% of patients: {below}"


def test_demo_conservation_and_manifest(demo_run):
    _, cfg, (summary, _) = demo_run
    manifest = json.loads((summary.report_dir / "manifest.json").read_text())
    assert manifest["files"], "the manifest lists the landing files"
    for f in manifest["files"]:
        assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"], f["path"]
        for key in ("path", "sha256", "rows_read", "rows_loaded", "rows_quarantined", "status"):
            assert key in f
    landing_files = sorted(
        str(p.relative_to(cfg.landing)) for p in cfg.landing.rglob("*") if p.is_file()
    )
    assert sorted(f["path"] for f in manifest["files"]) == landing_files


def _defect_recall(cohort: Path, restricted: Path) -> tuple[float, int]:
    """Share of planted defects caught by the right check; clean rows quarantined."""
    defects = pl.read_csv(cohort / "truth" / "defects.csv", infer_schema=False)
    con = duckdb.connect(str(restricted), read_only=True)
    try:
        failures = con.sql(
            "SELECT _source_file AS file, CAST(_source_row AS VARCHAR) AS row, check_id "
            "FROM quarantine.failures"
        ).pl()
        quarantined = con.sql(
            "SELECT DISTINCT _source_file AS file, CAST(_source_row AS VARCHAR) AS row "
            "FROM quarantine.rows"
        ).pl()
    finally:
        con.close()
    caught = defects.join(failures, on=["file", "row", "check_id"], how="semi").height
    clean_quarantined = quarantined.join(
        defects.select("file", "row"), on=["file", "row"], how="anti"
    ).height
    return caught / defects.height, clean_quarantined


def test_demo_planted_defects_caught_by_the_right_check(demo_run):
    cohort, cfg, _ = demo_run
    recall, clean_quarantined = _defect_recall(cohort, cfg.restricted_path)
    assert recall >= 0.99
    assert clean_quarantined == 0


def test_analytics_database_holds_no_identifier(demo_run):
    cohort, cfg, _ = demo_run
    identifiers = {
        line.strip()
        for line in (cohort / "truth" / "identifiers.txt").read_text().splitlines()
        if len(line.strip()) >= 4
    }
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        cols = con.execute(
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name IN ('curated', 'endpoints')"
        ).fetchall()
        assert not [c for c in cols if c[3].upper().startswith(("DATE", "TIMESTAMP"))]
        found = set()
        for schema, table, column, _ in cols:
            values = con.execute(
                f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM {schema}.{table} '
                f'WHERE "{column}" IS NOT NULL'
            ).fetchall()
            found |= {v[0] for v in values} & identifiers
    finally:
        con.close()
    assert not found, f"{len(found)} identifier values reached the analytics database"


@pytest.mark.slow
def test_large_cohort_matches_truth_and_catches_defects(large_run):
    cohort, cfg, _ = large_run
    shares = _agreement(cohort, cfg.analytics_path)
    below = {c: round(s, 4) for c, s in shares.items() if s < 0.99}
    assert not below, f"columns below 99% agreement at 10,000 patients: {below}"
    recall, clean_quarantined = _defect_recall(cohort, cfg.restricted_path)
    assert recall >= 0.99
    assert clean_quarantined == 0
