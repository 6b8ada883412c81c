"""Root cause first (issue 18): a rejected file raises one query with its fix and counts the rows
waiting for it; a patient whose row was quarantined is named as the cause of its dependent rows;
conflicting patient rows say that they conflict and where."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from blinaetl.ingest.landing import ingest_landing
from blinaetl.privacy import DEMO_KEY
from blinaetl.reports.queries import current_discrepancies
from blinaetl.synth import generate

PATIENTS = "clinical/SITE01/patients_20260901.csv"
SITE01_DEPENDENT = [
    "clinical/SITE01/assessments_20260901.csv",
    "clinical/SITE01/outcomes_20260901.csv",
    "clinical/SITE01/treatments_20260901.csv",
    "imaging/SITE01/reports_20260901.csv",
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("rootcause")
    generate(root / "c", n_patients=24, seed=5)
    return root / "c" / "landing"


def _copy(cohort, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    return landing


def _file(result, path):
    return result.files.filter(pl.col("path") == path).row(0, named=True)


def _lines(path) -> int:
    """Data rows of a delivered CSV, counted from its bytes (independent of the reader)."""
    return path.read_bytes().rstrip(b"\n").count(b"\n")


def test_rejected_patients_file_is_the_one_query_for_its_site(cohort, tmp_path):
    landing = _copy(cohort, tmp_path)
    pat = landing / PATIENTS
    header, rest = pat.read_bytes().split(b"\n", 1)
    pat.write_bytes(header.replace(b"MRN", b"PatientID") + b"\n" + rest)
    result = ingest_landing(landing, "r", DEMO_KEY)
    rejected = _file(result, PATIENTS)
    assert rejected["status"] == "rejected"
    assert "'MRN' not found" in rejected["error"]
    for path in SITE01_DEPENDENT:
        f = _file(result, path)
        assert f["rows_loaded"] == 0 and f["rows_quarantined"] == f["rows_read"] == _lines(
            landing / path
        )
        assert f["status"] == "all_quarantined", "not 'partially_quarantined'"
        assert f"because {PATIENTS} was rejected" in f["error"]
    # every row of SITE01's other files waits for the patients file; the flow rows referred
    # by SITE01 too: counted from the delivered flow files
    flow_site01 = (
        pl.read_csv(landing / "flow/LABTXT/flow_20260901.tsv", separator="\t", infer_schema=False)
        .filter(pl.col("Site") == "SITE01")
        .height
        + pl.read_parquet(landing / "flow/LABNUM/flow_20260901.parquet")
        .filter(pl.col("referring_site") == "SITE01")
        .height
    )
    expected = sum(_lines(landing / p) for p in SITE01_DEPENDENT) + flow_site01
    assert f"{expected} dependent row(s)" in rejected["error"]
    queries = current_discrepancies(result)
    file_query = queries.filter(pl.col("source_file") == PATIENTS)
    assert file_query.height == 1
    message = file_query["message"][0]
    assert f"{expected} dependent row(s)" in message and "Fix:" in message
    assert "correct 'columns' in the source mapping" in message
    knock_on = queries.filter(
        pl.col("rule_id").str.ends_with("_KNOWN_PATIENT") & (pl.col("site") == "SITE01")
    )
    assert knock_on.height == 0, "no knock-on 'patient not known' query per row"
    # the rows are still all accounted for (quarantined, with the cause)
    waiting = result.quarantine_failures.filter(pl.col("root_cause") == PATIENTS)
    assert waiting.select("_source_file", "_source_row").n_unique() == expected
    assert waiting["message"].str.contains("was rejected").all()


def test_conflicting_patient_rows_say_they_conflict_and_where(cohort, tmp_path):
    landing = _copy(cohort, tmp_path)
    pat = landing / PATIENTS
    data = pat.read_bytes()
    lines = data.rstrip(b"\n").split(b"\n")
    first = lines[1]
    # the same MRN again, with another diagnosis date: two rows of one patient that conflict
    mrn = first.split(b",")[0]
    conflicting = mrn + b',"Other, Name",1970-01-01,F,2015-05-05,negative,1,no'
    pat.write_bytes(data.rstrip(b"\n") + b"\n" + conflicting + b"\n")
    conflict_row = len(lines) + 1  # line number in the file (header is line 1)
    result = ingest_landing(landing, "r", DEMO_KEY)
    fails = result.quarantine_failures
    pat_fail = fails.filter(
        (pl.col("table_name") == "patients") & (pl.col("check_id") == "PAT_MRN_UNIQUE")
    )
    assert sorted(pat_fail["_source_row"].to_list()) == [2, conflict_row]
    for message in pat_fail["message"]:
        assert "conflicts with another row of the same patient" in message
        assert f"{PATIENTS} row 2" in message and f"{PATIENTS} row {conflict_row}" in message
    key = pat_fail["patient_key"][0]
    dependent = fails.filter(
        (pl.col("patient_key") == key) & pl.col("check_id").str.ends_with("_KNOWN_PATIENT")
    )
    assert dependent.height > 0
    for message in dependent["message"]:
        assert "No patient with this MRN" not in message
        assert "rows in the patients extract conflict" in message
        assert f"{PATIENTS} row {conflict_row}" in message
    assert dependent["root_cause"].is_null().all(), "still one query per row: each needs fixing"
