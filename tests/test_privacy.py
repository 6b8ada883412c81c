"""Privacy by construction: keyed pseudonyms, fail-closed secret, zones, and leak scans."""

from __future__ import annotations

import hashlib
import hmac
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
    with pytest.raises(MissingSecretError, match="shorter than 32 bytes"):
        resolve_secret(demo=False)


def test_run_without_secret_stops_before_writing(tmp_path, demo_cohort):
    cohort = demo_cohort
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
    assert out.returncode == 2, "a missing key is a configuration problem (docs: exit 2)"
    assert "BLINAETL_SECRET_KEY" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "wh" / "restricted").exists()
    assert not (tmp_path / "rp").exists()


def test_keys_stable_for_a_secret_and_different_for_another():
    site, mrn = pl.Series(["S1", "S1", "S2"]), pl.Series(["A1", "A2", "A1"])
    a = patient_keys(site, mrn, b"x" * 32)
    assert a.to_list() == patient_keys(site, mrn, b"x" * 32).to_list()
    assert a.n_unique() == 3, "same MRN at another site is another patient"
    b = patient_keys(site, mrn, b"y" * 32)
    assert set(a).isdisjoint(set(b))
    assert all(len(k) == 64 for k in a)


@pytest.mark.parametrize("key_length", [1, 32, 63, 64, 65, 200])
def test_keys_are_the_standard_hmac_sha256_of_site_separator_mrn(key_length):
    secret = bytes(range(256))[:key_length] if key_length <= 256 else b"k" * key_length
    site = pl.Series(["SITE01", "SITE02", "SITE01", None, "SITE01"])
    mrn = pl.Series(["MRN-0001", "MRN-0001", "Müller 7", "MRN-9", None])
    expected = [
        hmac.new(secret, f"{s}\x1f{m}".encode(), hashlib.sha256).hexdigest()
        if s is not None and m is not None
        else None
        for s, m in zip(site, mrn, strict=True)
    ]
    assert patient_keys(site, mrn, secret).to_list() == expected


def test_a_runs_patient_keys_hash_each_pair_once_and_equal_patient_keys(hashed):
    """`PatientKeys` gives each pair the key `patient_keys` gives it, in the order asked, and
    hashes a pair only the first time it is asked for: the same pair in a later group is looked
    up; the same MRN at another site is another pair, so it is hashed."""
    from blinaetl import privacy

    secret = b"s" * 32
    keys = privacy.PatientKeys(secret)
    first = pl.DataFrame({"site": ["S1", "S1"], "mrn": ["A1", "A2"]})
    got = keys.of(first)
    assert got.columns == ["site", "mrn", "patient_key"]
    expected = {
        (s, m): hmac.new(secret, f"{s}\x1f{m}".encode(), hashlib.sha256).hexdigest()
        for s, m in [("S1", "A1"), ("S1", "A2"), ("S2", "A1")]
    }
    assert got.rows() == [("S1", "A1", expected["S1", "A1"]), ("S1", "A2", expected["S1", "A2"])]
    assert len(hashed) == 2
    # a later group: A2 again (looked up), A1 at S2 (another patient: hashed), in its order
    later = keys.of(pl.DataFrame({"site": ["S2", "S1"], "mrn": ["A1", "A2"]}))
    assert later.rows() == [("S2", "A1", expected["S2", "A1"]), ("S1", "A2", expected["S1", "A2"])]
    assert sorted(hashed[:2]) == [b"S1\x1fA1", b"S1\x1fA2"] and hashed[2:] == [b"S2\x1fA1"]
    # only known pairs: nothing hashed
    assert keys.of(first.reverse())["patient_key"].to_list() == [
        expected["S1", "A2"],
        expected["S1", "A1"],
    ]
    assert len(hashed) == 3


def test_restricted_database_is_owner_only_and_analytics_is_readable(demo_run):
    _, cfg, _ = demo_run
    assert stat.S_IMODE(cfg.restricted_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.restricted_path.parent.stat().st_mode) == 0o700
    assert cfg.restricted_path.parent != cfg.analytics_path.parent
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


# --- date-shift mode ------------------------------------------------------------------------


def test_date_shift_is_keyed_nonzero_bounded_and_stable():
    from blinaetl.privacy import date_shift_days, date_shifts

    keys = [f"{i:064x}" for i in range(2000)]
    a = [date_shift_days(b"a" * 32, k, 365) for k in keys]
    assert all(1 <= abs(s) <= 365 for s in a), "never 0, never beyond the bound"
    assert a == [date_shift_days(b"a" * 32, k, 365) for k in keys], "stable for a secret"
    b = [date_shift_days(b"b" * 32, k, 365) for k in keys]
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 20, "another secret, other shifts"
    assert min(a) < -300 and max(a) > 300 and 900 < sum(s > 0 for s in a) < 1100
    assert all(1 <= abs(date_shift_days(b"a" * 32, k, 1)) <= 1 for k in keys[:50])
    with pytest.raises(ValueError, match="at least 1"):
        date_shift_days(b"a" * 32, keys[0], 0)
    frame = date_shifts(pl.Series([keys[3], None, keys[1], keys[3]]), b"a" * 32, 365)
    assert frame["patient_key"].to_list() == [keys[1], keys[3]], "one row per distinct key"
    assert frame["shift_days"].to_list() == [a[1], a[3]]


def test_default_mode_publishes_no_patient_dates(demo_run):
    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert "patients" in tables and "patient_dates" not in tables


def test_publish_refuses_dates_outside_the_date_shift_table():
    from blinaetl.warehouse.database import PublishError, check_publishable

    con = duckdb.connect()
    con.execute("CREATE SCHEMA curated")
    con.execute("CREATE TABLE curated.patient_dates (patient_key VARCHAR, start_date DATE)")
    con.execute("COMMENT ON TABLE curated.patient_dates IS 'shifted'")
    for col in ("patient_key", "start_date"):
        con.execute(f"COMMENT ON COLUMN curated.patient_dates.{col} IS 'c'")
    with pytest.raises(PublishError, match=r"patient_dates\.start_date has type DATE"):
        check_publishable(con, date_shift=False)
    check_publishable(con, date_shift=True)  # allowed there in date-shift mode
    con.execute("CREATE TABLE curated.other (seen TIMESTAMP)")
    con.execute("COMMENT ON TABLE curated.other IS 'x'")
    con.execute("COMMENT ON COLUMN curated.other.seen IS 'x'")
    with pytest.raises(PublishError, match=r"curated\.other\.seen has type TIMESTAMP"):
        check_publishable(con, date_shift=True)


def _read(db: Path, sql: str) -> pl.DataFrame:
    """One query on a database file opened read-only."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


PUBLISHED_COLUMNS = (
    "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
    "WHERE schema_name IN ('curated', 'endpoints')"
)


@pytest.fixture(scope="module")
def shifted_run(tmp_path_factory, demo_cohort):
    from blinaetl.pipeline import RunConfig, run_pipeline

    cohort = demo_cohort
    root = tmp_path_factory.mktemp("date_shift")
    cfg = RunConfig(
        landing=cohort / "landing",
        warehouse=root / "wh",
        reports=root / "rp",
        demo=True,
        gx=False,
        date_shift=True,
    )
    run_pipeline(cfg)
    return cohort, cfg


def test_date_shift_mode_moves_each_patients_dates_by_one_hidden_shift(shifted_run):
    from blinaetl.privacy import date_shift_days

    _, cfg = shifted_run
    cols = _read(cfg.analytics_path, PUBLISHED_COLUMNS).rows()
    dated = {(s, t) for s, t, _, d in cols if d.upper().startswith(("DATE", "TIMESTAMP"))}
    assert dated == {("curated", "patient_dates")}
    assert not [c for c in cols if "shift" in c[2]], "the shift itself is not published"
    published = _read(
        cfg.analytics_path,
        "SELECT d.*, p.response_day, p.hct_day, p.relapse_day, p.os_days, p.died "
        "FROM curated.patient_dates AS d JOIN curated.patients AS p USING (patient_key)",
    )
    n_patients = _read(cfg.analytics_path, "SELECT * FROM curated.patients").height
    true_dates = _read(
        cfg.restricted_path,
        "SELECT patient_key, day0_date, diagnosis_date AS true_diagnosis_date "
        "FROM harmonized.patient_timeline",
    )
    assert published.height == n_patients == true_dates.height
    both = published.join(true_dates, on="patient_key")
    assert both.height == n_patients
    for row in both.iter_rows(named=True):
        shift = (row["start_date"] - row["day0_date"]).days
        assert shift == date_shift_days(DEMO_KEY, row["patient_key"], 365)
        assert shift != 0 and abs(shift) <= 365
        assert (row["diagnosis_date"] - row["true_diagnosis_date"]).days == shift
        start = row["start_date"]
        for date_col, day_col in (
            ("response_date", "response_day"),
            ("hct_date", "hct_day"),
            ("relapse_date", "relapse_day"),
        ):
            if row[day_col] is None:
                assert row[date_col] is None
            else:
                assert (row[date_col] - start).days == row[day_col]
        end = row["death_date"] if row["died"] else row["last_known_alive_date"]
        assert (end - start).days == row["os_days"]
        assert (row["death_date"] is None) == (not row["died"])
    shifts = {(r["start_date"] - r["day0_date"]).days for r in both.iter_rows(named=True)}
    assert len(shifts) > n_patients // 2, "shifts differ between patients"


def test_date_shift_mode_leaks_no_true_date_or_identifier(shifted_run):
    """No published date is the true date of the same event; other identifiers stay out.

    Each shifted date is compared with the true date of its own event (start with day 0,
    diagnosis with diagnosis, death with death). A shifted date may by chance fall on the true
    date of another event of the same patient (in the demo cohort a death 17 days after day 0
    and a shift of -17 days put the shifted death on the true day 0): that reveals nothing, since
    the reader does not know which event it matches, so it is not counted as a leak.
    """
    cohort, cfg = shifted_run
    shifted = _read(cfg.analytics_path, "SELECT * FROM curated.patient_dates")
    text_columns = [
        (schema, table, column)
        for schema, table, column, dtype in _read(cfg.analytics_path, PUBLISHED_COLUMNS).rows()
        if dtype == "VARCHAR"
    ]
    strings = [
        value
        for schema, table, column in text_columns
        for value in _read(
            cfg.analytics_path,
            f'SELECT DISTINCT "{column}" AS v FROM {schema}.{table} WHERE "{column}" IS NOT NULL',
        )["v"]
    ]
    real = _read(
        cfg.restricted_path,
        "SELECT patient_key, day0_date, diagnosis_date, birth_date, death_date "
        "FROM harmonized.patient_timeline",
    )
    joined = shifted.join(real, on="patient_key", suffix="_true")
    assert joined.height == shifted.height > 0
    assert "birth_date" not in shifted.columns, "birth dates are never published, not even shifted"
    same_event = (
        ("start_date", "day0_date"),
        ("diagnosis_date", "diagnosis_date_true"),
        ("death_date", "death_date_true"),
    )
    for row in joined.iter_rows(named=True):
        for published, true in same_event:
            if row[true] is not None:
                assert row[published] is not None and row[published] != row[true], published
    blob = "\n".join(strings)
    assert strings and not [i for i in _identifiers(cohort) if i in blob]
