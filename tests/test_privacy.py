"""Privacy by construction: keyed pseudonyms, fail-closed secret, zones, and leak scans."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from blinaetl.privacy import DEMO_KEY, MissingSecretError, patient_keys, resolve_secret


def _identifiers(cohort: Path) -> set[str]:
    lines = (cohort / "truth" / "identifiers.txt").read_text(encoding="utf-8").splitlines()
    # very short values (a 4-character first name) would match ordinary words; names of 5+ and
    # every MRN, date and accession number are scanned
    return {v.strip() for v in lines if len(v.strip()) >= 5}


def test_missing_secret_fails_closed(monkeypatch):
    monkeypatch.delenv("BLINAETL_SECRET_KEY", raising=False)
    with pytest.raises(MissingSecretError, match="BLINAETL_SECRET_KEY"):
        resolve_secret(demo=False)
    assert resolve_secret(demo=True) == DEMO_KEY


def test_short_secret_is_refused(monkeypatch):
    monkeypatch.setenv("BLINAETL_SECRET_KEY", "short")
    with pytest.raises(MissingSecretError, match="shorter than 16"):
        resolve_secret(demo=False)


def test_run_without_secret_stops_before_writing(tmp_path, demo_run):
    cohort, _, _ = demo_run
    env = {k: v for k, v in os.environ.items() if k != "BLINAETL_SECRET_KEY"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "blinaetl.cli",
            "run",
            "--engine",
            "core",
            "--landing",
            str(cohort / "landing"),
            "--warehouse",
            str(tmp_path / "wh"),
            "--reports",
            str(tmp_path / "rp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 1
    assert "BLINAETL_SECRET_KEY" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "wh" / "restricted.duckdb").exists()
    assert not (tmp_path / "rp").exists()


def test_keys_stable_for_a_secret_and_different_for_another():
    site, mrn = pl.Series(["S1", "S1", "S2"]), pl.Series(["A1", "A2", "A1"])
    a = patient_keys(site, mrn, b"x" * 32)
    assert a.to_list() == patient_keys(site, mrn, b"x" * 32).to_list()
    assert a.n_unique() == 3, "same MRN at another site is another patient"
    b = patient_keys(site, mrn, b"y" * 32)
    assert set(a).isdisjoint(set(b))
    assert all(len(k) == 64 for k in a)


def test_restricted_database_is_owner_only_and_analytics_is_readable(demo_run):
    _, cfg, _ = demo_run
    assert stat.S_IMODE(cfg.restricted_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.analytics_path.stat().st_mode) & 0o044 == 0o044


def test_no_identifier_in_any_string_of_the_analytics_database(demo_run):
    cohort, cfg, _ = demo_run
    ids = _identifiers(cohort)
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        cols = con.execute(
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name IN ('curated', 'endpoints')"
        ).fetchall()
        assert not [
            c for c in cols if c[3].upper().startswith(("DATE", "TIMESTAMP", "TIME", "INTERVAL"))
        ]
        text = []
        for schema, table, column, _ in cols:
            text += [
                v[0]
                for v in con.execute(
                    f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM {schema}.{table} WHERE "{column}" IS NOT NULL'
                ).fetchall()
            ]
    finally:
        con.close()
    blob = "\n".join(text)
    hits = [i for i in ids if i in blob]
    assert not hits, f"{len(hits)} identifiers found in the analytics database"


def test_no_identifier_in_any_report_file(demo_run):
    cohort, _, (summary, _) = demo_run
    ids = _identifiers(cohort)
    files = [p for p in summary.report_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes().decode("utf-8", errors="replace")
        hits = [i for i in ids if i in data]
        assert not hits, f"{path.name}: {len(hits)} identifier(s)"


def test_run_log_is_written_and_holds_no_identifier(demo_run):
    cohort, _, (summary, _) = demo_run
    log = (summary.report_dir / "run.log").read_text()
    assert "stage publish finished" in log and "rows read" in log
    assert not [i for i in _identifiers(cohort) if i in log]


def test_restricted_zone_does_hold_the_identifiers(demo_run):
    """The scan is meaningful: the same identifiers are present where they are allowed."""
    cohort, cfg, _ = demo_run
    truth = pl.read_csv(cohort / "truth" / "patients.csv", infer_schema=False)
    con = duckdb.connect(str(cfg.restricted_path), read_only=True)
    try:
        mrns = {r[0] for r in con.execute("SELECT mrn FROM staging.patients").fetchall()}
    finally:
        con.close()
    assert set(truth["mrn"]) == mrns
