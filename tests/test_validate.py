"""Every check type, fed bad data and good data, through the pandera-compiled contracts."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pytest

from blinaetl.ingest.landing import map_frame
from blinaetl.ingest.sources import FileMapping, SourceMapping
from blinaetl.privacy import DEMO_KEY, patient_keys
from blinaetl.validate.contracts import load_contracts
from blinaetl.validate.executor import (
    CHECK_PREFIX,
    CHECK_TYPES,
    check_frame,
    compile_schema,
    validate_tables,
)

CONTRACTS = load_contracts()

PATIENT = {
    "mrn": "M1",
    "patient_name": "Doe, Jane",
    "birth_date": "1970-01-01",
    "sex": "F",
    "diagnosis_date": "2014-01-01",
    "ph_status": "negative",
    "prior_lines": "2",
    "prior_hct": "no",
}
TREATMENT = {
    "mrn": "M1",
    "treatment": "blinatumomab",
    "cycle": "1",
    "start_date": "2015-01-01",
    "end_date": "2015-01-28",
}
ASSESSMENT = {
    "mrn": "M1",
    "assessment_date": "2015-02-01",
    "marrow_blasts_pct": "3",
    "anc_10e9l": "1.5",
    "platelets_10e9l": "150",
}
OUTCOME = {"mrn": "M1", "event": "death", "event_date": "2016-01-01"}
FLOW = {
    "mrn": "M1",
    "patient_site": "S1",
    "specimen_id": "F1",
    "collection_date": "2015-01-01",
    "specimen_type": "marrow",
    "cd19_pct_positive": "90",
}
IMAGING = {
    "mrn": "M1",
    "accession": "A1",
    "report_date": "2015-01-02",
    "modality": "CT",
    "report_text": "No evidence of leukemic involvement.",
}
REPORTED = {"mrn": "M1", "response_date": "2015-02-01", "reported_response": "CR"}
BASE = {
    "patients": [PATIENT],
    "treatments": [TREATMENT],
    "assessments": [ASSESSMENT],
    "outcomes": [OUTCOME],
    "flow_results": [FLOW],
    "imaging_reports": [IMAGING],
    "reported_responses": [REPORTED],
}


def mapped(table: str, rows: list[dict[str, str | None]]) -> pl.DataFrame:
    """Rows as the ingest step hands them to validation (identity mapping, site S1)."""
    contract = CONTRACTS[table]
    cols = list(dict.fromkeys(k for r in rows for k in r)) or ["mrn"]
    raw = pl.DataFrame(
        [{c: r.get(c) for c in cols} for r in rows], schema={c: pl.Utf8 for c in cols}
    )
    raw = raw.with_columns((pl.int_range(pl.len()) + 2).cast(pl.Int64).alias("_source_row"))
    fm = FileMapping(
        table=table,
        glob="x",
        format="csv",
        columns={c: c for c in cols if c in contract.field_names},
    )
    src = SourceMapping(
        "test",
        "flow" if table == "flow_results" else "clinical",
        "S1",
        None,
        (fm,),
        path=__import__("pathlib").Path("test.yaml"),
    )
    frame, _ = map_frame(raw, src, fm, contract, f"{table}.csv")
    site = pl.col("patient_site") if table == "flow_results" else pl.lit("S1")
    frame = frame.with_columns(
        site.alias("site"),
        pl.lit("test").alias("_source_id"),
        pl.lit(f"{table}.csv").alias("_source_file"),
        pl.lit("sha").alias("_file_sha256"),
        pl.lit(None, pl.Date).alias("_extract_date"),
        pl.lit("run").alias("_run_id"),
        pl.lit(False).alias("_truncated"),
    )
    return frame.with_columns(patient_keys(frame["site"], frame["mrn"], DEMO_KEY))


def run(overrides: dict[str, list[dict]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    tables = {t: mapped(t, overrides.get(t, rows)) for t, rows in BASE.items()}
    out = validate_tables(tables, CONTRACTS)
    return out.quarantine_failures, out.dq_results


def failed(overrides: dict[str, list[dict]]) -> set[str]:
    failures, _ = run(overrides)
    return set(failures["check_id"])


def test_clean_rows_fail_nothing():
    failures, dq = run({})
    assert failures.height == 0
    assert set(dq["status"]) <= {"passed", "not_applicable"}


BAD_CASES = [
    # (check id, table, rows)
    ("PAT_MRN_REQUIRED", "patients", [{**PATIENT, "mrn": None}]),
    ("PAT_BIRTH_DATE_TYPE", "patients", [{**PATIENT, "birth_date": "1970-02-30"}]),
    ("PAT_PRIOR_LINES_TYPE", "patients", [{**PATIENT, "prior_lines": "two"}]),
    ("PAT_PRIOR_HCT_TYPE", "patients", [{**PATIENT, "prior_hct": "maybe"}]),
    ("PAT_SEX_SET", "patients", [{**PATIENT, "sex": "Femal"}]),
    ("PAT_PH_SET", "patients", [{**PATIENT, "ph_status": "pos?"}]),
    ("PAT_PRIOR_LINES_RANGE", "patients", [{**PATIENT, "prior_lines": "40"}]),
    ("PAT_BIRTH_BEFORE_DX", "patients", [{**PATIENT, "diagnosis_date": "1960-01-01"}]),
    ("PAT_AGE_AT_DX", "patients", [{**PATIENT, "birth_date": "1900-01-01"}]),
    ("PAT_MRN_UNIQUE", "patients", [PATIENT, {**PATIENT, "sex": "M"}]),
    ("PAT_DUPLICATE_ROW", "patients", [PATIENT, PATIENT]),
    ("TRT_SET", "treatments", [{**TREATMENT, "treatment": "chemo"}]),
    ("TRT_CYCLE_RANGE", "treatments", [{**TREATMENT, "cycle": "0"}]),
    ("TRT_BLINA_CYCLE_REQUIRED", "treatments", [{**TREATMENT, "cycle": None}]),
    ("TRT_START_BEFORE_END", "treatments", [{**TREATMENT, "end_date": "2014-12-01"}]),
    ("TRT_UNIQUE", "treatments", [TREATMENT, {**TREATMENT, "end_date": "2015-01-29"}]),
    ("TRT_KNOWN_PATIENT", "treatments", [TREATMENT, {**TREATMENT, "mrn": "M9", "cycle": "2"}]),
    (
        "TRT_AFTER_DX",
        "treatments",
        [
            TREATMENT,
            {**TREATMENT, "cycle": "2", "start_date": "2013-01-01", "end_date": "2013-01-28"},
        ],
    ),
    (
        "TRT_BEFORE_DEATH",
        "treatments",
        [
            TREATMENT,
            {**TREATMENT, "cycle": "2", "start_date": "2016-06-01", "end_date": "2016-06-28"},
        ],
    ),
    ("ASM_BLASTS_RANGE", "assessments", [{**ASSESSMENT, "marrow_blasts_pct": "150"}]),
    ("ASM_ANC_RANGE", "assessments", [{**ASSESSMENT, "anc_10e9l": "250"}]),
    ("ASM_PLT_RANGE", "assessments", [{**ASSESSMENT, "platelets_10e9l": "180000"}]),
    ("ASM_WBC_RANGE", "assessments", [{**ASSESSMENT, "blood_wbc_10e9l": "5000"}]),
    ("ASM_MRD_RANGE", "assessments", [{**ASSESSMENT, "mrd_pct": "101"}]),
    ("ASM_BLOOD_BLASTS_RANGE", "assessments", [{**ASSESSMENT, "blood_blasts_pct": "101"}]),
    ("ASM_CSF_WBC_RANGE", "assessments", [{**ASSESSMENT, "csf_wbc_per_ul": "-1"}]),
    ("ASM_CSF_RBC_RANGE", "assessments", [{**ASSESSMENT, "csf_rbc_per_ul": "-5"}]),
    ("ASM_CSF_BLASTS_SET", "assessments", [{**ASSESSMENT, "csf_blasts": "maybe"}]),
    ("ASM_RESPONSE_SET", "assessments", [{**ASSESSMENT, "reported_response": "C R"}]),
    ("ASM_ANY_VALUE", "assessments", [{"mrn": "M1", "assessment_date": "2015-02-01"}]),
    ("ASM_UNIQUE", "assessments", [ASSESSMENT, {**ASSESSMENT, "anc_10e9l": "2"}]),
    ("ASM_KNOWN_PATIENT", "assessments", [{**ASSESSMENT, "mrn": "M9"}]),
    ("ASM_AFTER_DX", "assessments", [{**ASSESSMENT, "assessment_date": "2013-06-01"}]),
    ("ASM_BEFORE_DEATH", "assessments", [{**ASSESSMENT, "assessment_date": "2016-06-01"}]),
    ("ASM_ASSESSMENT_DATE_REQUIRED", "assessments", [{**ASSESSMENT, "assessment_date": None}]),
    ("ASM_MARROW_BLASTS_PCT_TYPE", "assessments", [{**ASSESSMENT, "marrow_blasts_pct": "3,5%"}]),
    (
        "OUT_EVENT_SET",
        "outcomes",
        [OUTCOME, {**OUTCOME, "event": "progression", "event_date": "2015-06-01"}],
    ),
    # same key, rows differ in a column the mapping does not load: not an exact copy
    ("OUT_UNIQUE", "outcomes", [{**OUTCOME, "note": "a"}, {**OUTCOME, "note": "b"}]),
    ("OUT_ONE_DEATH", "outcomes", [OUTCOME, {**OUTCOME, "event_date": "2015-12-01"}]),
    ("OUT_KNOWN_PATIENT", "outcomes", [OUTCOME, {**OUTCOME, "mrn": "M9"}]),
    (
        "OUT_AFTER_DX",
        "outcomes",
        [OUTCOME, {**OUTCOME, "event": "relapse", "event_date": "2013-01-01"}],
    ),
    (
        "OUT_BEFORE_DEATH",
        "outcomes",
        [OUTCOME, {**OUTCOME, "event": "last_contact", "event_date": "2017-01-01"}],
    ),
    (
        "OUT_RELAPSE_AFTER_START",
        "outcomes",
        [OUTCOME, {**OUTCOME, "event": "relapse", "event_date": "2014-06-01"}],
    ),
    ("FLW_SPECIMEN_SET", "flow_results", [{**FLOW, "specimen_type": "urine"}]),
    ("FLW_BLASTS_RANGE", "flow_results", [{**FLOW, "blasts_pct": "120"}]),
    ("FLW_CD19PCT_RANGE", "flow_results", [{**FLOW, "cd19_pct_positive": "-3"}]),
    ("FLW_MFI_RANGE", "flow_results", [{**FLOW, "cd19_mfi": "-10"}]),
    ("FLW_REF_MFI_RANGE", "flow_results", [{**FLOW, "ref_mfi": "0"}]),
    (
        "FLW_CD19_EVIDENCE",
        "flow_results",
        [{k: v for k, v in FLOW.items() if k != "cd19_pct_positive"}],
    ),
    ("FLW_SPECIMEN_UNIQUE", "flow_results", [FLOW, {**FLOW, "blasts_pct": "10"}]),
    ("FLW_DUPLICATE_ROW", "flow_results", [FLOW, FLOW]),
    ("FLW_KNOWN_PATIENT", "flow_results", [{**FLOW, "patient_site": "S2"}]),
    ("FLW_AFTER_DX", "flow_results", [{**FLOW, "collection_date": "2013-01-01"}]),
    ("FLW_BEFORE_DEATH", "flow_results", [{**FLOW, "collection_date": "2016-02-01"}]),
    ("IMG_MODALITY_SET", "imaging_reports", [{**IMAGING, "modality": "C.T."}]),
    ("IMG_TEXT_NOT_BLANK", "imaging_reports", [{**IMAGING, "report_text": " - "}]),
    ("IMG_REPORT_TEXT_REQUIRED", "imaging_reports", [{**IMAGING, "report_text": None}]),
    ("IMG_ACCESSION_UNIQUE", "imaging_reports", [IMAGING, {**IMAGING, "modality": "MRI"}]),
    ("IMG_KNOWN_PATIENT", "imaging_reports", [{**IMAGING, "mrn": "M9"}]),
    ("IMG_AFTER_BIRTH", "imaging_reports", [{**IMAGING, "report_date": "1960-01-01"}]),
    ("IMG_BEFORE_DEATH", "imaging_reports", [{**IMAGING, "report_date": "2016-05-01"}]),
]


# plausibility.temporal (issue 18): every date of every table after the extract's date (here
# the run date, since these rows come from no dated file); boundaries in test_hostile
BAD_CASES += [
    # reported responses (CDISC SDTM RS and other label-only files); diagnosis 2014-01-01, death
    # 2016-01-01
    ("RSP_RESPONSE_SET", "reported_responses", [{**REPORTED, "reported_response": "C R"}]),
    (
        "RSP_UNIQUE",
        "reported_responses",
        [REPORTED, {**REPORTED, "reported_response": "CRi"}],
    ),
    ("RSP_KNOWN_PATIENT", "reported_responses", [REPORTED, {**REPORTED, "mrn": "M9"}]),
    ("RSP_AFTER_DX", "reported_responses", [{**REPORTED, "response_date": "2013-12-31"}]),
    ("RSP_BEFORE_DEATH", "reported_responses", [{**REPORTED, "response_date": "2016-01-02"}]),
]
BAD_CASES += [
    (c.id, table, [{**rows[0], c.column: "2099-01-01"}])
    for table, rows in BASE.items()
    for c in CONTRACTS[table].checks
    if c.check == "not_after_extract"
]


@pytest.mark.parametrize(("check_id", "table", "rows"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_data_fails_the_check(check_id, table, rows):
    assert check_id in failed({table: rows})


def test_every_declared_check_has_a_bad_data_case():
    # row_complete and row_text read what the reader saw in the file (a cut-off or NUL line):
    # tested through the reader (test_ingest, test_hostile)
    declared = {
        c.id
        for k in CONTRACTS.values()
        for c in k.checks
        if c.check not in ("row_complete", "row_text")
    }
    implied_sample = {c for c in declared if c.endswith(("_REQUIRED", "_TYPE", "_DUPLICATE_ROW"))}
    covered = {c[0] for c in BAD_CASES}
    assert declared - implied_sample <= covered, sorted(declared - implied_sample - covered)


def test_every_check_type_has_an_implementation():
    used = {c.check for k in CONTRACTS.values() for c in k.checks}
    assert used <= set(CHECK_TYPES)


def test_exact_copy_quarantines_only_the_copy():
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    tables["assessments"] = mapped("assessments", [ASSESSMENT, ASSESSMENT])
    out = validate_tables(tables, CONTRACTS)
    assert out.tables["assessments"].height == 1
    assert out.quarantine_rows.filter(pl.col("table_name") == "assessments")[
        "_source_row"
    ].to_list() == [3]


def test_identical_rows_in_two_files_are_not_copies():
    # a copy is a repeat of a row's content within one file; the same row delivered in two
    # files is a key conflict (both rows fail ASM_UNIQUE), never a duplicate row
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    one = mapped("assessments", [ASSESSMENT])
    tables["assessments"] = pl.concat(
        [one, one.with_columns(pl.lit("assessments_b.csv").alias("_source_file"))]
    )
    out = validate_tables(tables, CONTRACTS)
    got = out.quarantine_failures.filter(pl.col("table_name") == "assessments")
    assert got.select("_source_file", "check_id").rows() == [
        ("assessments.csv", "ASM_UNIQUE"),
        ("assessments_b.csv", "ASM_UNIQUE"),
    ]


@pytest.mark.parametrize(
    ("events", "failing_rows"),
    [
        (["death", "relapse"], []),  # the relapse is outside the check (when: event death)
        (["death", "death"], [2, 3]),  # both deaths of one patient fail
        (["death", "relapse", "death"], [2, 4]),  # a row the check leaves out pairs with none
        (["relapse", "relapse"], []),
    ],
)
def test_unique_when_pairs_only_the_rows_it_checks(events, failing_rows):
    rows = [
        {**OUTCOME, "event": e, "event_date": f"2016-01-0{i + 1}"} for i, e in enumerate(events)
    ]
    failures, dq = run({"outcomes": rows})
    got = failures.filter(pl.col("check_id") == "OUT_ONE_DEATH")["_source_row"].to_list()
    assert got == failing_rows
    row = dq.filter(pl.col("check_id") == "OUT_ONE_DEATH").row(0, named=True)
    assert row["rows_failed"] == len(failing_rows) and row["rows_checked"] == len(events)


def test_key_conflict_quarantines_every_conflicting_row():
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    tables["assessments"] = mapped("assessments", [ASSESSMENT, {**ASSESSMENT, "anc_10e9l": "2"}])
    out = validate_tables(tables, CONTRACTS)
    assert out.tables["assessments"].height == 0


def test_warning_loads_the_row_with_a_flag():
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    tables["assessments"] = mapped("assessments", [{**ASSESSMENT, "reported_response": "C R"}])
    out = validate_tables(tables, CONTRACTS)
    loaded = out.tables["assessments"]
    assert loaded.height == 1
    assert loaded["_warnings"].to_list() == [["ASM_RESPONSE_SET"]]


def test_dqd_status_uses_the_threshold():
    # ASM_RESPONSE_SET tolerates 5% violating rows: 1 of 30 passes, 2 of 30 fail
    ok = [{**ASSESSMENT, "assessment_date": f"2015-02-{d:02d}"} for d in range(1, 29)]
    _, dq = run(
        {
            "assessments": [
                *ok,
                {**ASSESSMENT, "assessment_date": "2015-03-01", "reported_response": "C R"},
            ]
        }
    )
    row = dq.filter(pl.col("check_id") == "ASM_RESPONSE_SET").row(0, named=True)
    assert row["rows_failed"] == 1 and row["status"] == "passed"
    bad = [
        {**ASSESSMENT, "assessment_date": f"2015-03-0{d}", "reported_response": "C R"}
        for d in (1, 2)
    ]
    _, dq = run({"assessments": ok + bad})
    assert dq.filter(pl.col("check_id") == "ASM_RESPONSE_SET")["status"].item() == "failed"


def test_empty_table_checks_are_not_applicable():
    _, dq = run({"imaging_reports": []})
    assert set(dq.filter(pl.col("table_name") == "imaging_reports")["status"]) == {"not_applicable"}


def test_lazyframe_validation_would_skip_value_checks_but_ours_does_not():
    frame = mapped("assessments", [{**ASSESSMENT, "marrow_blasts_pct": "150"}])
    frame = frame.with_columns(
        pl.lit(True).alias("_known"),
        pl.lit(False).alias("_is_copy"),
        pl.int_range(pl.len()).alias("_idx"),  # the checks hang on the row-number column
    )
    for c in ("_dx", "_birth", "_death", "_b0"):
        frame = frame.with_columns(pl.lit(None, pl.Date).alias(c))
    contract = CONTRACTS["assessments"]
    checks = [c for c in contract.checks if c.id == "ASM_BLASTS_RANGE"]
    schema = compile_schema(contract, checks)
    checked = check_frame(contract, checks, frame)
    assert checked[CHECK_PREFIX + "ASM_BLASTS_RANGE"].to_list() == [False]  # the one-pass outcome
    schema.validate(checked.lazy(), lazy=True)  # pandera's default depth on a LazyFrame: no error
    with pytest.raises(pa.errors.SchemaErrors) as err:
        schema.validate(checked, lazy=True)  # what blinaetl runs: a collected frame
    cases = err.value.failure_cases
    assert cases.select("check", "index").rows() == [("ASM_BLASTS_RANGE", 0)]  # per check, by row
    assert "ASM_BLASTS_RANGE" in failed(
        {"assessments": [{**ASSESSMENT, "marrow_blasts_pct": "150"}]}
    )


def test_failure_messages_carry_no_values():
    secret_mrn = "ZZ-SECRET-4711"
    failures, _ = run({"assessments": [{**ASSESSMENT, "mrn": secret_mrn, "anc_10e9l": "999"}]})
    assert failures.height >= 2
    text = " ".join(failures["message"]) + " ".join(str(v) for v in failures.rows())
    assert secret_mrn not in text
    assert "999" not in " ".join(failures["message"])


def test_failures_are_listed_in_file_row_order_then_check_id_every_run():
    """Quarantine tables come out in one order (row, then check), whatever the join threads do."""
    bad = [
        {**ASSESSMENT, "platelets_10e9l": "-5"},
        ASSESSMENT,
        {**ASSESSMENT, "mrn": "UNKNOWN", "platelets_10e9l": "-5"},
        {**ASSESSMENT, "marrow_blasts_pct": "140", "platelets_10e9l": "-5"},
    ] * 50
    first, _ = run({"assessments": bad})
    rows = first.select("_source_row", "check_id")
    assert rows.height > 100
    assert rows.equals(rows.sort("_source_row", "check_id"))
    for _ in range(3):
        again, _ = run({"assessments": bad})
        assert again.equals(first)


def _accepted(failures: pl.DataFrame, check_id: str) -> pl.DataFrame:
    return failures.filter(pl.col("check_id") == check_id).select(
        "_source_id", "table_name", "check_id", "row_hash"
    )


def test_a_failure_the_site_confirmed_loads_the_row_with_the_check_as_a_warning():
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    bad = {**ASSESSMENT, "anc_10e9l": "250"}
    tables["assessments"] = mapped("assessments", [bad, {**bad, "assessment_date": "2020-03-01"}])
    first = validate_tables(tables, CONTRACTS)
    assert first.tables["assessments"].height == 0
    # the site confirmed the first row as delivered; the second (other content) is not covered
    ok = _accepted(first.quarantine_failures, "ASM_ANC_RANGE").head(1)
    out = validate_tables(tables, CONTRACTS, ok)
    loaded = out.tables["assessments"]
    assert loaded["_source_row"].to_list() == [2]
    assert loaded["_warnings"].to_list() == [["ASM_ANC_RANGE"]]
    assert out.quarantine_rows["_source_row"].to_list() == [3]
    sev = dict(out.quarantine_failures.select("_source_row", "severity").iter_rows())
    assert sev == {2: "warning", 3: "error"}


def test_a_confirmation_covers_only_its_check_on_that_row():
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    bad = {**ASSESSMENT, "anc_10e9l": "250", "platelets_10e9l": "99999"}
    tables["assessments"] = mapped("assessments", [bad])
    first = validate_tables(tables, CONTRACTS)
    out = validate_tables(tables, CONTRACTS, _accepted(first.quarantine_failures, "ASM_ANC_RANGE"))
    assert out.tables["assessments"].height == 0, "the platelet failure still quarantines it"
    # and the confirmation of another table's check with the same id parts does nothing
    other = _accepted(first.quarantine_failures, "ASM_ANC_RANGE").with_columns(
        pl.lit("outcomes").alias("table_name")
    )
    assert validate_tables(tables, CONTRACTS, other).tables["assessments"].height == 0


def test_tables_are_put_in_validation_order_with_unknown_tables_last_as_given():
    from blinaetl.validate.contracts import in_validation_order

    given = {"zeta": 1, "imaging_reports": 2, "patients": 3, "alpha": 4, "outcomes": 5}
    assert in_validation_order(given) == [
        "patients",
        "outcomes",
        "imaging_reports",
        "zeta",
        "alpha",
    ]
    assert in_validation_order(iter(["treatments", "patients"])) == ["patients", "treatments"]
    assert in_validation_order([]) == []


def _chunk_lengths(frame: pl.DataFrame) -> set[tuple[int, ...]]:
    return {tuple(len(c) for c in frame.get_column(n).get_chunks()) for n in frame.columns}


def _bad_and_good_assessments() -> pl.DataFrame:
    """Five assessments rows in two chunks (3 + 2 rows, as a mapped file is read in chunks),
    one failing the parse check (its count is not a number) and one a warning."""
    rows = [{**ASSESSMENT, "assessment_date": f"2015-02-0{d}"} for d in range(1, 6)]
    rows[1] = {**rows[1], "anc_10e9l": "many"}
    rows[3] = {**rows[3], "reported_response": "C R"}
    frame = mapped("assessments", rows)
    frame = pl.DataFrame([frame.get_column(c) for c in frame.columns])  # every column stored
    return pl.concat([frame.slice(0, 3), frame.slice(3)], rechunk=False)


def test_the_validator_keeps_the_chunks_of_a_frame_whose_columns_share_them():
    """A column added in other chunks makes polars copy every column the next query reads
    (to align them): the helper columns, `_idx` and the loaded rows' `_warnings` are set in
    the frame's own chunks, and the outcome is the one of the frame in one chunk."""
    from blinaetl.validate.executor import _with_helpers, validate_table

    chunked = _bad_and_good_assessments()
    assert _chunk_lengths(chunked) == {(3, 2)}
    work = _with_helpers(chunked, None)
    assert _chunk_lengths(work) == {(3, 2)}
    assert work["_idx"].to_list() == [0, 1, 2, 3, 4]
    got = validate_table(chunked, CONTRACTS["assessments"], None)
    whole = validate_table(chunked.rechunk(), CONTRACTS["assessments"], None)
    assert len(_chunk_lengths(got.loaded)) == 1  # one chunking for every column
    assert got.loaded.equals(whole.loaded) and got.loaded.height == 4
    assert got.loaded["_warnings"].to_list() == [[], [], ["ASM_RESPONSE_SET"], []]
    assert got.failures.equals(whole.failures) and got.dq.equals(whole.dq)
    assert got.quarantine_rows["_source_row"].to_list() == [3]


def test_checked_is_called_after_the_checks_so_the_delivered_text_can_be_released():
    """`checked(table, quarantined)` comes once per table once its checks have run, with the
    rows the table quarantines: a caller dropping the table's `__raw__` columns there changes
    nothing, while the parse checks read them (a frame without them before validating cannot
    run those checks: the other side)."""
    tables = {t: mapped(t, rows) for t, rows in BASE.items()}
    tables["assessments"] = _bad_and_good_assessments()
    calls: list[str] = []
    given: dict[str, list[tuple[str, int]]] = {}

    def checked(table: str, quarantined: pl.DataFrame) -> None:
        calls.append(table)
        given[table] = quarantined.rows()
        frame = tables[table]
        tables[table] = frame.drop(c for c in frame.columns if c.startswith("__raw__"))

    plain = validate_tables(dict(tables), CONTRACTS)
    released = validate_tables(tables, CONTRACTS, checked=checked)
    assert sorted(calls) == sorted(BASE) and not any(
        c.startswith("__raw__") for f in tables.values() for c in f.columns
    )
    for t in BASE:
        assert released.tables[t].equals(plain.tables[t])
    # the rows handed over are the quarantined ones, as (file, row): row 3 (its count does not
    # parse, an error); row 5 fails only a warning (ASM_RESPONSE_SET), so it loads
    quarantined = released.quarantine_rows.filter(pl.col("table_name") == "assessments")
    assert given["assessments"] == quarantined.select("_source_file", "_source_row").rows()
    assert [r for _, r in given["assessments"]] == [3]
    assert all(given[t] == [] for t in BASE if t != "assessments")
    assert released.quarantine_failures.equals(plain.quarantine_failures)
    assert released.dq_results.equals(plain.dq_results)
    got = plain.quarantine_failures.filter(pl.col("table_name") == "assessments")
    # the unparsable count was caught from its delivered text
    assert got.select("check_id", "_source_row").rows() == [
        ("ASM_ANC_10E9L_TYPE", 3),
        ("ASM_RESPONSE_SET", 5),
    ]
    before = validate_tables(tables, CONTRACTS)  # the frames now without `__raw__`
    errors = before.dq_results.filter(
        (pl.col("table_name") == "assessments") & (pl.col("status") == "error")
    )["check_id"].to_list()
    assert "ASM_ANC_10E9L_TYPE" in errors
    assert before.tables["assessments"].height == 5  # the unparsable row is no longer caught
