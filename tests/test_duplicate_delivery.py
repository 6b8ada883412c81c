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
from tests.t1_site import T1_PATIENTS_HEADER, T1_PATIENTS_MAPPING, write_t1_landing

MAPPING = T1_PATIENTS_MAPPING
HEADER = T1_PATIENTS_HEADER
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
    # the copies' failure templates are kept for the rows that have copies (lines 2-5) alone:
    # line 42 fails a check but has no copy, so it has its own failures and no copy template
    (segment,) = streamed.quarantine.segments
    copy_templates = segment.templates.filter(pl.col("_copy"))
    assert sorted(copy_templates["_first_row"].unique()) == [2, 3, 4, 5]
    own_templates = segment.templates.filter(~pl.col("_copy"))
    assert 42 in own_templates["_first_row"].to_list()
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


# --- the compact quarantine: identical tables in the restricted database -------------------

SITES = """
source: {source}
kind: clinical
site: {site}
files:
  - table: patients
    glob: "clinical/{site}/patients_*.csv"
    format: csv
    date_format: "%Y-%m-%d"
    columns: {{mrn: MRN, patient_name: patient_name, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}}
  - table: assessments
    glob: "clinical/{site}/assessments_*.csv"
    format: csv
    date_format: "%Y-%m-%d"
    columns: {{mrn: MRN, assessment_date: date, marrow_blasts_pct: blasts}}
"""
T1_PATIENTS = [
    "P001,Ann Doe,1970-01-01,F,2014-01-01,negative,2,no\n",
    "P002,Bob Roe,1965-05-05,M,2013-03-03,positive,1,yes\n",
    "P003,Cy Poe,1980-02-02,F,2015-04-04,negative,3,no\n",
    "P004,Di Low,1975-03-03,X,2016-05-05,negative,1,no\n",  # sex X: quarantined
    "P003,Cy Poe,1980-02-02,F,2015-09-09,negative,3,no\n",  # conflicts with P003 above
]
T1_ASSESSMENTS = [
    "P001,2015-01-01,10\n",  # loads
    "P004,2017-01-01,20\n",  # waits for P004's quarantined rows
    "P003,2016-01-01,5\n",  # waits for P003's conflicting rows
    "P002,2013-01-01,5\n",  # before P002's diagnosis
    "P001,2015-02-02,150\n",  # blasts out of range
]
ASM_HEADER = "MRN,date,blasts\n"
BOM = "\ufeff"  # a byte-order mark: read by the whole-file reader


def _delivery(tmp_path: Path) -> tuple[Path, Path]:
    """Three sites: T1's patients and assessments repeated (copies of quarantined rows that
    conflict, fail a check, or wait for a quarantined patient); T2's patients file rejected
    (renamed MRN column) and its assessments repeated (every copy waits for that file); T3's
    files start with a byte-order mark, so they are read whole, between and after the streamed
    files in the quarantine's order."""
    sources, landing = tmp_path / "sources", tmp_path / "landing"
    sources.mkdir()
    for i, site in enumerate(("T1", "T2", "T3"), 1):
        (sources / f"t{i}.yaml").write_text(SITES.format(source=f"t{i}_clinical", site=site))
        (landing / "clinical" / site).mkdir(parents=True)
    t1 = landing / "clinical" / "T1"
    (t1 / "patients_20260101.csv").write_text(HEADER + "".join(T1_PATIENTS) * 5)
    (t1 / "assessments_20260101.csv").write_text(ASM_HEADER + "".join(T1_ASSESSMENTS) * 4)
    t2 = landing / "clinical" / "T2"
    (t2 / "patients_20260101.csv").write_text(HEADER.replace("MRN", "PatientID") + DISTINCT[0])
    (t2 / "assessments_20260101.csv").write_text(
        ASM_HEADER + "P001,2015-01-01,10\nP002,2015-03-03,12\n" * 6
    )
    t3 = landing / "clinical" / "T3"
    (t3 / "patients_20260101.csv").write_text(
        BOM + HEADER + "R001,Ed Yu,1960-01-01,M,2012-01-01,negative,1,no\n"
        "R002,Fa Wu,1962-01-01,X,2012-01-01,negative,1,no\n"
    )
    (t3 / "assessments_20260101.csv").write_text(
        BOM + ASM_HEADER + "R001,2013-01-01,5\nR002,2013-01-01,5\n" * 2
    )
    return sources, landing


def _restricted_quarantine(result, path: Path) -> dict[str, pl.DataFrame]:
    """The quarantine and meta tables `load_staging` writes, read back in their stored order."""
    import duckdb

    from blinaetl.validate.contracts import load_contracts
    from blinaetl.warehouse import database

    con = duckdb.connect(str(path))
    try:
        database.load_staging(
            con, load_contracts(), result.tables, result.quarantine, result.files, result.dq_results
        )
        names = ("quarantine.rows", "quarantine.failures", "meta.files", "meta.dq_results")
        return {n: con.sql(f"SELECT * FROM {n}").pl() for n in names}
    finally:
        con.close()


def _buffers(series: pl.Series) -> list[int]:
    """Per chunk of a text column, the address of its string views (Arrow's C data interface
    exports them without a copy): two columns holding one text have the same addresses."""
    newest = pl.CompatLevel.newest()
    return [c.to_arrow(compat_level=newest).buffers()[1].address for c in series.get_chunks()]


def test_streamed_file_holds_its_delivered_text_once(tmp_path, monkeypatch):
    """In a streamed file a field's `__raw__` column (and a text field's typed column) is the
    delivered text's own buffer, not a copy of it, in a chunk without copies and in one with
    (mapped again from its kept rows): measured, a copy per column cost 0.35 GiB of the
    300,000-patient assessments. `sex` has a code list, so its `__raw__` text is its own."""
    monkeypatch.setenv("BLINAETL_CHUNK_ROWS", "3")
    p005 = "P005,Ed Moe,1990-06-06,M,2017-06-06,negative,2,no\n"
    # chunks of 3 rows: P001-P003; P004, a copy of P001, P005; a copy of P002, P003's copy
    rows = [*DISTINCT[:3], DISTINCT[3], DISTINCT[0], p005, DISTINCT[1], DISTINCT[2]]
    landing, sources = write_t1_landing(tmp_path, MAPPING, {REL: (HEADER + "".join(rows)).encode()})
    plan = plan_files(landing, sources)
    mapped = read_file(plan.jobs[0], plan, "run-1")
    assert mapped.frame["_source_row"].to_list() == [2, 3, 4, 5, 7]
    assert mapped.copies is not None and mapped.copies["_source_row"].to_list() == [6, 8, 9]
    assert mapped.frame["mrn"].to_list() == ["P001", "P002", "P003", "P004", "P005"]
    for field, delivered in [
        ("mrn", "MRN"),
        ("patient_name", "patient_name"),
        ("birth_date", "birth_date"),
        ("prior_lines", "prior_lines"),
    ]:
        text = _buffers(mapped.raw[delivered])
        assert len(text) == 2  # the kept rows of the two chunks holding distinct rows
        assert _buffers(mapped.frame["__raw__" + field]) == text, field
    assert _buffers(mapped.frame["mrn"]) == _buffers(mapped.raw["MRN"])
    assert _buffers(mapped.frame["__raw__sex"]) != _buffers(mapped.raw["sex"])


def test_compact_copies_give_the_whole_file_quarantine_tables_and_queries(tmp_path, monkeypatch):
    """Copies kept as row numbers and expanded in DuckDB at load give the restricted database
    the quarantine tables the whole-file reader gives (same rows, same order), and the same
    root causes, file notes and query listing."""
    from blinaetl.reports.queries import current_discrepancies

    monkeypatch.setenv("BLINAETL_CHUNK_ROWS", "7")
    sources, landing = _delivery(tmp_path)
    streamed = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    segments = {s.path for s in streamed.quarantine.segments}
    assert segments == {
        "clinical/T1/patients_20260101.csv",
        "clinical/T1/assessments_20260101.csv",
        "clinical/T2/assessments_20260101.csv",
    }
    monkeypatch.setattr(landing_module, "scan_plain_text", lambda *a, **k: None)
    whole = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    assert whole.quarantine.segments == []

    got_db = _restricted_quarantine(streamed, tmp_path / "streamed.duckdb")
    want_db = _restricted_quarantine(whole, tmp_path / "whole.duckdb")
    for name, frame in want_db.items():
        assert_frame_equal(got_db[name], frame), name
    # hand-worked: T1 patients 25 rows, 3 load (P001, P002 and P003 are the first 3 lines;
    # P003 conflicts with line 6), T2's 12 assessments all wait for T2's patients file
    q = want_db["quarantine.rows"]
    per_file = dict(q.group_by("_source_file").len().iter_rows())
    assert per_file["clinical/T1/patients_20260101.csv"] == 25 - 2
    assert per_file["clinical/T2/assessments_20260101.csv"] == 12
    files = want_db["meta.files"].filter(pl.col("path") == "clinical/T2/patients_20260101.csv")
    assert "12 dependent row(s) of 1 file(s)" in files["error"][0]
    # a knock-on row names every row of its patient in the patients file, copies included
    p004 = [f"clinical/T1/patients_20260101.csv row {5 + 5 * k}" for k in range(5)]
    knock = want_db["quarantine.failures"].filter(
        (pl.col("_source_file") == "clinical/T1/assessments_20260101.csv")
        & (pl.col("check_id") == "ASM_KNOWN_PATIENT")
        & pl.col("_source_row").is_in([3, 8])  # P004's first assessment line and its copy
    )
    assert knock.height == 2
    assert all(r in m for r in p004 for m in knock["message"]), knock["message"][0]
    # the row order of the tables is file order, then row order
    assert q["_source_file"].to_list()[:23] == ["clinical/T1/patients_20260101.csv"] * 23
    assert q["_source_row"].to_list()[:23] == sorted(q["_source_row"].to_list()[:23])

    assert_frame_equal(current_discrepancies(streamed), current_discrepancies(whole))
    for got, want in (
        (streamed.quarantine.rows(), whole.quarantine.rows_base),
        (streamed.quarantine.failures(), whole.quarantine.failures_base),
    ):
        assert_frame_equal(got, want)
    counts = ["_source_file", "check_id", "message"]
    assert_frame_equal(
        streamed.quarantine.failure_counts().sort(counts),
        whole.quarantine.failure_counts().sort(counts),
    )
    assert streamed.quarantine.row_count == whole.quarantine.rows_base.height
    assert streamed.quarantine.failure_count == whole.quarantine.failures_base.height


def test_a_run_on_a_duplicate_delivery_gives_the_whole_file_run_quarantine_and_queries(
    tmp_path, monkeypatch
):
    """End to end: a cohort whose SITE01 assessments file is delivered ten times over (nearly
    every row an exact copy, quarantined), run through the pipeline with the streamed reader
    and with the whole-file reader: the restricted database's quarantine and file tables and
    the steward's query listing (`queries.csv`) are the same, row order included."""
    import duckdb

    from blinaetl.pipeline import RunConfig, run_pipeline
    from blinaetl.synth import generate

    generate(tmp_path / "c", n_patients=24, seed=5)
    landing = tmp_path / "c" / "landing"
    target = next(landing.glob("clinical/SITE01/assessments_*.csv"))
    header, *body = target.read_bytes().splitlines(keepends=True)
    target.write_bytes(header + b"".join(body) * 10)
    monkeypatch.setenv("BLINAETL_CHUNK_ROWS", "50")

    def run(name: str) -> dict[str, pl.DataFrame]:
        cfg = RunConfig(
            landing=landing,
            warehouse=tmp_path / name / "warehouse",
            reports=tmp_path / name / "reports",
            demo=True,
            gx=False,
            run_id="20260102T000000Z",
        )
        _, result = run_pipeline(cfg)
        con = duckdb.connect(str(cfg.restricted_path), read_only=True)
        try:
            names = ("quarantine.rows", "quarantine.failures", "meta.files", "meta.dq_results")
            out = {n: con.sql(f"SELECT * FROM {n}").pl() for n in names}
        finally:
            con.close()
        out["queries.csv"] = pl.read_csv(cfg.report_dir / "queries.csv", infer_schema=False)
        out["segments"] = pl.DataFrame({"path": [s.path for s in result.quarantine.segments]})
        return out

    streamed = run("streamed")
    assert target.relative_to(landing).as_posix() in streamed["segments"]["path"].to_list()
    monkeypatch.setattr(landing_module, "scan_plain_text", lambda *a, **k: None)
    whole = run("whole")
    assert whole["segments"].height == 0
    rows = whole["quarantine.rows"]
    copies = rows.filter(pl.col("_source_file") == target.relative_to(landing).as_posix())
    assert copies.height >= 9 * len(body)  # every copy is quarantined
    for name in ("quarantine.rows", "quarantine.failures", "meta.files", "meta.dq_results"):
        assert_frame_equal(streamed[name], whole[name]), name
    assert_frame_equal(streamed["queries.csv"], whole["queries.csv"])
