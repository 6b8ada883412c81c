"""A delivery whose rows are nearly all exact duplicates (findings.md, "Memory on large
deliveries"), at a small size: every row is accounted for, every quarantined row is recorded
once with its file line number and all its reasons. The memory figure itself is measured by
benchmarks/duplicate_memory_benchmark.py (not timed here)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from blinaetl.ingest import landing as landing_module
from blinaetl.ingest.landing import ingest_landing, plan_files, read_file
from blinaetl.privacy import DEMO_KEY

MAPPING = """
source: t_clinical
kind: clinical
site: T1
files:
  - table: patients
    glob: "clinical/T1/patients_*.csv"
    format: csv
    date_format: "%Y-%m-%d"
    columns: {mrn: MRN, patient_name: patient_name, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}
"""
HEADER = "MRN,patient_name,birth_date,sex,diagnosis_date,ph_status,prior_lines,prior_hct\n"
DISTINCT = [
    "P001,Ann Doe,1970-01-01,F,2014-01-01,negative,2,no\n",
    "P002,Bob Roe,1965-05-05,M,2013-03-03,positive,1,yes\n",
    "P003,Cy Poe,1980-02-02,F,2015-04-04,negative,3,no\n",
    "P004,Di Low,1975-03-03,X,2016-05-05,negative,1,no\n",  # sex X: fails PAT_SEX_SET
]
REPEATS = 300
REL = "clinical/T1/patients_20260101.csv"


def _run(tmp_path: Path):
    sources, landing = tmp_path / "sources", tmp_path / "landing"
    sources.mkdir()
    (sources / "t.yaml").write_text(MAPPING)
    path = landing / REL
    path.parent.mkdir(parents=True)
    path.write_text(HEADER + "".join(DISTINCT) * REPEATS)
    return ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)


@pytest.mark.parametrize("chunk_rows", [None, "7"])
def test_duplicate_heavy_file_conserves_rows_and_keeps_exact_line_numbers(
    tmp_path, monkeypatch, chunk_rows
):
    if chunk_rows:  # read in chunks of 7 rows: copies of rows of earlier chunks
        monkeypatch.setenv("BLINAETL_CHUNK_ROWS", chunk_rows)
    result = _run(tmp_path)
    n = len(DISTINCT) * REPEATS  # 1,200 data rows on file lines 2 .. 1,201
    # hand-worked: line L holds DISTINCT[(L - 2) % 4]; the first P001, P002, P003 (lines 2-4)
    # load; the first P004 (line 5) fails only PAT_SEX_SET; every later line is a copy
    # (PAT_DUPLICATE_ROW), and the copies of P004 fail PAT_SEX_SET too
    expected_reasons = {5: ["PAT_SEX_SET"]}
    for line in range(6, n + 2):
        reasons = ["PAT_DUPLICATE_ROW"]
        if (line - 2) % 4 == 3:
            reasons.append("PAT_SEX_SET")
        expected_reasons[line] = sorted(reasons)

    f = result.files.filter(pl.col("path") == REL).to_dicts()[0]
    assert (f["rows_read"], f["rows_loaded"], f["rows_quarantined"]) == (n, 3, n - 3)
    assert f["rows_loaded"] + f["rows_quarantined"] == f["rows_read"]

    loaded = result.tables["patients"]
    assert loaded["_source_row"].to_list() == [2, 3, 4]
    assert loaded["mrn"].to_list() == ["P001", "P002", "P003"]

    q = result.quarantine_rows
    assert q["_source_row"].to_list() == sorted(expected_reasons)  # each once, in file order
    assert q["_source_row"].n_unique() == q.height == n - 3
    # the row as delivered is kept for every quarantined row
    raws = {r: json.loads(j) for r, j in zip(q["_source_row"], q["raw_json"], strict=True)}
    for line in (5, 6, 1201):
        assert raws[line]["MRN"] == DISTINCT[(line - 2) % 4].split(",")[0]
    assert raws[5]["sex"] == "X"

    got = (
        result.quarantine_failures.filter(pl.col("_source_file") == REL)
        .group_by("_source_row")
        .agg(pl.col("check_id").sort())
    )
    got_reasons = {r: list(c) for r, c in got.iter_rows()}
    assert got_reasons == expected_reasons
    # the DQD counts agree with the failures listed
    dq = {r["check_id"]: r for r in result.dq_results.to_dicts()}
    assert dq["PAT_DUPLICATE_ROW"]["rows_failed"] == n - 4
    assert dq["PAT_SEX_SET"]["rows_failed"] == REPEATS
    assert dq["PAT_DUPLICATE_ROW"]["rows_checked"] == n


def _all_frames(result) -> dict[str, pl.DataFrame]:
    frames = {
        name: getattr(result, name)
        for name in (
            "quarantine_rows",
            "quarantine_failures",
            "files",
            "dq_results",
            "disappeared",
            "not_collected",
            "date_imputations",
        )
    }
    return frames | {f"tables.{t}": f for t, f in result.tables.items()}


def test_streamed_file_holds_distinct_rows_and_gives_the_whole_file_outcome(tmp_path, monkeypatch):
    """The chunked reader keeps each distinct row once (copies as row numbers) and its outcome
    equals the whole-file reader's, frame for frame, row order included; also when the last
    line is cut off and when a site confirmed a duplicate row as delivered (the copy loads)."""
    monkeypatch.setenv("BLINAETL_CHUNK_ROWS", "5")
    sources, landing = tmp_path / "sources", tmp_path / "landing"
    sources.mkdir()
    (sources / "t.yaml").write_text(MAPPING)
    path = landing / REL
    path.parent.mkdir(parents=True)
    # 40 rows, then a copy of P002 cut off after its sex (no closing newline)
    path.write_text(HEADER + "".join(DISTINCT) * 10 + "P002,Bob Roe,1965-05-05,M")

    plan = plan_files(landing, sources)
    mapped = read_file(plan.jobs[0], plan, "run-1")
    assert mapped.frame["_source_row"].to_list() == [2, 3, 4, 5, 42]  # distinct + cut-off line
    assert mapped.copies is not None and mapped.copies.height == 36
    assert mapped.copies["_source_row"].to_list() == list(range(6, 42))

    streamed = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    assert streamed.quarantine_rows.filter(pl.col("_source_row") == 42).height == 1
    p001 = streamed.quarantine_failures.filter(pl.col("_source_row") == 6)["row_hash"][0]
    accepted = pl.DataFrame(
        {
            "_source_id": ["t_clinical"],
            "table_name": ["patients"],
            "check_id": ["PAT_DUPLICATE_ROW"],
            "row_hash": [p001],
        }
    )
    confirmed = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources, accepted=accepted)
    # hand-worked: P001 (line 2) and P003 (line 4) load; P002 (line 3) shares its MRN with the
    # cut-off line 42 (not a copy: its missing fields make other content), so both fail the
    # MRN uniqueness check; P004 fails PAT_SEX_SET; once confirmed, the 9 copies of P001
    # (lines 6, 10, ..., 38) load too
    assert streamed.tables["patients"]["_source_row"].to_list() == [2, 4]
    assert confirmed.tables["patients"]["_source_row"].to_list() == [2, 4, *range(6, 42, 4)]

    monkeypatch.setattr(landing_module, "scan_plain_text", lambda *a, **k: None)
    whole_mapped = read_file(plan.jobs[0], plan, "run-1")
    assert whole_mapped.copies is None and whole_mapped.frame.height == 41
    whole = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    whole_confirmed = ingest_landing(
        landing, "run-1", DEMO_KEY, sources_dir=sources, accepted=accepted
    )
    for got, want in ((streamed, whole), (confirmed, whole_confirmed)):
        got_frames, want_frames = _all_frames(got), _all_frames(want)
        assert got_frames.keys() == want_frames.keys()
        for name, frame in want_frames.items():
            assert_frame_equal(got_frames[name], frame, check_dtypes=True), name
