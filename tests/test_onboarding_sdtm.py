"""CDISC SDTM RS, TR and study days across domains, onboarded through the bundled template.

Every expected value is worked by hand from the small study written in the test (dates, study
days, response categories); every file's rows are checked for conservation.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from blinaetl.resources import templates_dir
from tests.test_onboarding import assert_conserved, file_row

S1, S2, S3, S4 = "PILOT01-701-1015", "PILOT01-701-1023", "PILOT01-702-1015", "PILOT01-702-1030"
SITES = '{"701": S701, "702": S702}'

DM = {
    "USUBJID": [S1, S2, S3, S4],
    "BRTHDTC": ["1950-03-04", "1961-07-01", "1948-12-24", "1970-01-01"],
    "SEX": ["F", "M", "F", "M"],
    "RFSTDTC": ["2014-01-02", "2014-03-01", "2014-01-06", "2014-02-01"],
}
MH = {
    "USUBJID": [S1, S2, S3, S4],
    "MHCAT": ["PRIMARY DIAGNOSIS"] * 4,
    "MHSTDTC": ["2013-06-01", "2013-11-01", "2013-08-15", "2013-09-09"],
}
EX = {
    "USUBJID": [S1, S2, S3, S4],
    "EXTRT": ["BLINATUMOMAB"] * 4,
    "EXGRPID": ["1"] * 4,
    "EXSTDTC": ["2014-01-02", "2014-03-01", "2014-01-06", "2014-02-01"],
    "EXENDTC": ["2014-01-29", "2014-03-28", "2014-02-02", "2014-02-28"],
}
DS = {
    "USUBJID": [S1],
    "DSCAT": ["PROTOCOL MILESTONE"],
    "DSDECOD": ["INFORMED CONSENT OBTAINED"],
    "DSSTDTC": ["2013-12-20"],
}
# overall responses; row 2 is a derived best response (left out by the template's `where`),
# row 7 a result the template's codes do not know (quarantined, RSP_RESPONSE_SET)
RS = {
    "USUBJID": [S1, S1, S2, S3, S4, S4, S4],
    "RSTESTCD": [
        "OVRLRESP",
        "BESTRESP",
        "OVRLRESP",
        "OVRLRESP",
        "OVRLRESP",
        "OVRLRESP",
        "OVRLRESP",
    ],
    "RSSTRESC": ["CR", "CR", "CRi", "PD", "NE", "CR", "PARTIAL"],
    "RSDTC": [
        "2014-01-30",
        "2014-01-30",
        "2014-03-29",
        "2014-02-03",
        "2014-02-20",
        "2014-03-20",
        "2014-04-17",
    ],
    "VISIT": ["WEEK 4", "END OF STUDY", "WEEK 4", "WEEK 4", "WEEK 3", "WEEK 7", "WEEK 11"],
}
# counts on the dates of two RS rows (S1 2014-01-30, S2 2014-03-29): one assessment each
LB = {
    "USUBJID": [S1, S1, S2, S2],
    "LBTESTCD": ["PLAT", "NEUT", "PLAT", "NEUT"],
    "LBSTRESN": ["120", "1.5", "35", "0.4"],
    "LBDTC": ["2014-01-30", "2014-01-30", "2014-03-29", "2014-03-29"],
}


def write_domains(folder: Path, domains: dict[str, dict[str, list]], fmt: str) -> None:
    """SDTM domains as SAS transport (pyreadstat) or CDISC Dataset-JSON 1.1 files."""
    import pandas as pd
    import pyreadstat

    folder.mkdir(parents=True, exist_ok=True)
    for name, data in domains.items():
        if fmt == "xpt":
            pyreadstat.write_xport(
                pd.DataFrame(data), str(folder / f"{name}.xpt"), table_name=name.upper()
            )
            continue
        names = list(data)
        doc = {
            "datasetJSONVersion": "1.1.0",
            "name": name.upper(),
            "columns": [
                {"itemOID": f"IT.{name.upper()}.{n}", "name": n, "dataType": "string"}
                for n in names
            ],
            "rows": [list(r) for r in zip(*(data[n] for n in names), strict=True)],
        }
        (folder / f"{name}.json").write_text(json.dumps(doc))


def template(fmt: str, drop: tuple[str, ...] = ()) -> str:
    """The bundled SDTM template as a user adjusts it: site codes, the format, entries dropped."""
    text = (
        (templates_dir() / "sdtm.yaml")
        .read_text()
        .replace(
            'pattern: "^[^-]+-([^-]+)-"}',
            f'pattern: "^[^-]+-([^-]+)-", codes: {SITES}}}',
        )
    )
    if fmt == "dataset-json":
        text = text.replace("format: xpt", "format: dataset-json").replace('.xpt"', '.json"')
    doc = yaml.safe_load(text)
    doc["files"] = [f for f in doc["files"] if f["table"] not in drop]
    return yaml.safe_dump(doc, sort_keys=False)


def setup_study(tmp_path: Path, domains: dict, fmt: str, drop: tuple[str, ...] = ()):
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    write_domains(landing / "sdtm" / "PILOT01", domains, fmt)
    sources.mkdir(parents=True)
    (sources / "sdtm.yaml").write_text(template(fmt, drop))
    return landing, sources


def ingest(landing: Path, sources: Path):
    from blinaetl.ingest.landing import ingest_landing
    from blinaetl.privacy import DEMO_KEY

    result = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    assert_conserved(result)
    return result


# --- RS: reported response ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xpt", "dataset-json"])
def test_sdtm_rs_fills_reported_responses_beside_lb_without_a_collision(tmp_path, fmt):
    domains = {"dm": DM, "mh": MH, "ex": EX, "ds": DS, "rs": RS, "lb": LB}
    landing, sources = setup_study(tmp_path, domains, fmt, drop=("imaging_reports",))
    result = ingest(landing, sources)
    ext = "xpt" if fmt == "xpt" else "json"
    rs_rel, lb_rel = f"sdtm/PILOT01/rs.{ext}", f"sdtm/PILOT01/lb.{ext}"
    got = result.tables["reported_responses"].sort("_source_row")
    assert got.select(
        "site", "mrn", "response_date", "reported_response", "visit", "_source_row"
    ).rows() == [
        ("S701", S1, dt.date(2014, 1, 30), "CR", "WEEK 4", 1),
        ("S701", S2, dt.date(2014, 3, 29), "CRi", "WEEK 4", 3),
        ("S702", S3, dt.date(2014, 2, 3), "relapse", "WEEK 4", 4),  # PD
        ("S702", S4, dt.date(2014, 2, 20), "NE", "WEEK 3", 5),
        ("S702", S4, dt.date(2014, 3, 20), "CR", "WEEK 7", 6),
    ]
    fails = result.quarantine_failures.filter(pl.col("_source_file") == rs_rel)
    assert fails.select("_source_row", "check_id").rows() == [(7, "RSP_RESPONSE_SET")]
    rs = file_row(result, rs_rel)
    assert (rs["rows_loaded"], rs["rows_quarantined"]) == (5, 1)
    assert "1 of 7 delivered row(s) left out by the mapping's 'where'" in rs["error"]
    # the LB counts on the RS dates load: no ASM_UNIQUE collision (RS is not an assessment row)
    lab = result.tables["assessments"].sort("_source_row")
    assert lab.select("mrn", "assessment_date", "platelets_10e9l", "anc_10e9l").rows() == [
        (S1, dt.date(2014, 1, 30), 120.0, 1.5),
        (S2, dt.date(2014, 3, 29), 35.0, 0.4),
    ]
    assert file_row(result, lb_rel)["rows_quarantined"] == 0


@pytest.mark.parametrize("fmt", ["xpt", "dataset-json"])
def test_sdtm_label_only_study_gets_its_cr_count_and_rate(tmp_path, fmt):
    import duckdb

    from blinaetl.pipeline import RunConfig, run_pipeline

    domains = {"dm": DM, "mh": MH, "ex": EX, "ds": DS, "rs": RS}
    landing, sources = setup_study(tmp_path, domains, fmt, drop=("imaging_reports", "assessments"))
    cfg = RunConfig(
        landing=landing,
        warehouse=tmp_path / "wh",
        reports=tmp_path / "rp",
        sources_dir=sources,
        demo=True,
        gx=False,
    )
    _, result = run_pipeline(cfg)
    assert_conserved(result, cfg.restricted_path)
    rs = result.files.filter(pl.col("path").str.starts_with("sdtm/PILOT01/rs."))
    assert rs.select("rows_read", "rows_loaded", "rows_quarantined").rows() == [(6, 5, 1)]
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        best = con.execute(
            "SELECT best_response, response_source, count(*) FROM curated.patients GROUP BY ALL"
        ).fetchall()
        rate = con.execute(
            "SELECT responders, n, rate FROM endpoints.response_rates WHERE predictor = 'overall'"
        ).fetchall()
    finally:
        con.close()
    # day 1 = the day after cycle 1 started: S1 CR on day 28; S2 CRi on day 28; S3 PD (relapse
    # before any remission = refractory) on day 28; S4 NE on day 19, CR on day 47 (its row 7
    # quarantined). CR 2 of 4 (50 %); responders (CR, CRh, CRi) 3 of 4.
    assert sorted(best) == [
        ("CR", "reported", 2),
        ("CRi", "reported", 1),
        ("refractory", "reported", 1),
    ]
    assert rate == [(3, 4, 0.75)]


# --- TR: tumour results, linked to TU ------------------------------------------------------

TU = {
    "USUBJID": [S1, S3, S3, S3],
    "TUSEQ": ["1", "1", "2", "3"],
    "TULNKID": ["T01", "T01", "T02", "T03"],
    "TULOC": ["TESTIS", "SKIN", "BREAST", "KIDNEY"],
    "TULAT": ["LEFT", None, "RIGHT", "LEFT"],
    "TUMETHOD": ["PHYSICAL EXAMINATION", "BIOPSY", "MRI", "CT SCAN"],
    "TUDTC": ["2014-01-01", "2014-01-04", "2014-01-04", "2014-02-03"],
}
# row 4 a measurement and row 7 a not-evaluable state (left out by the template's `where`);
# row 8 links to no TU lesion (no location: its text cannot be composed, quarantined)
TR = {
    "USUBJID": [S1, S1, S3, S3, S3, S3, S1, S2],
    "TRSEQ": ["1", "2", "1", "2", "3", "4", "3", "1"],
    "TRLNKID": ["T01", "T01", "T01", "T02", "T02", "T03", "T01", "T09"],
    "TRTESTCD": ["TUMSTATE"] * 3 + ["LDIAM"] + ["TUMSTATE"] * 4,
    "TRSTRESC": [
        "PRESENT",
        "ABSENT",
        "PRESENT",
        "12",
        "UNEQUIVOCAL PROGRESSION",
        "NEW",
        "NOT EVALUABLE",
        "PRESENT",
    ],
    "TRDTC": [
        "2014-01-01",
        "2014-01-30",
        "2014-01-04",
        "2014-01-04",
        "2014-02-03",
        "2014-02-03",
        "2014-03-01",
        "2014-03-10",
    ],
    "TRMETHOD": [
        "PHYSICAL EXAMINATION",
        "PHYSICAL EXAMINATION",
        "BIOPSY",
        "MRI",
        "MRI",
        "CT SCAN",
        "PHYSICAL EXAMINATION",
        "CT SCAN",
    ],
}


@pytest.mark.parametrize("fmt", ["xpt", "dataset-json"])
def test_sdtm_tr_rows_become_em_findings_with_site_laterality_assertion_and_change(tmp_path, fmt):
    from blinaetl.text import read_em_text

    domains = {"dm": DM, "mh": MH, "ex": EX, "ds": DS, "tu": TU, "tr": TR}
    landing, sources = setup_study(tmp_path, domains, fmt, drop=("assessments",))
    result = ingest(landing, sources)
    ext = "xpt" if fmt == "xpt" else "json"
    tr_rel = f"sdtm/PILOT01/tr.{ext}"
    tr = file_row(result, tr_rel)
    assert (tr["rows_loaded"], tr["rows_quarantined"]) == (5, 1)
    assert "2 of 8 delivered row(s) left out by the mapping's 'where'" in tr["error"]
    assert "(7 of 8 row(s) found)" in tr["error"]  # the lookup runs before the where
    assert "ignored" not in tr["error"]  # TRTESTCD, TRLNKID are read by where and lookup
    fails = result.quarantine_failures.filter(pl.col("_source_file") == tr_rel)
    assert fails.select("_source_row", "check_id").rows() == [(8, "IMG_REPORT_TEXT_REQUIRED")]
    img = result.tables["imaging_reports"].filter(pl.col("_source_file") == tr_rel)
    img = img.sort("_source_row")
    assert img.select(
        "_source_row", "accession", "report_date", "modality", "report_text"
    ).rows() == [
        (
            1,
            f"{S1}-TR1",
            dt.date(2014, 1, 1),
            "exam",
            "Extramedullary disease present in the LEFT TESTIS.",
        ),
        (
            2,
            f"{S1}-TR2",
            dt.date(2014, 1, 30),
            "exam",
            "No extramedullary disease in the LEFT TESTIS.",
        ),
        (
            3,
            f"{S3}-TR1",
            dt.date(2014, 1, 4),
            "pathology",
            "Extramedullary disease present in the SKIN.",
        ),
        (
            5,
            f"{S3}-TR3",
            dt.date(2014, 2, 3),
            "MRI",
            "Progression of extramedullary disease in the RIGHT BREAST.",
        ),
        (
            6,
            f"{S3}-TR4",
            dt.date(2014, 2, 3),
            "CT",
            "New extramedullary disease in the LEFT KIDNEY.",
        ),
    ]
    mentions, unread = read_em_text(
        img.select(
            "patient_key",
            "site",
            "_source_file",
            "_source_row",
            "report_date",
            "modality",
            "report_text",
        )
    )
    got = mentions.sort("_source_row").select(
        "_source_row", "site", "site_group", "icdo3", "laterality", "assertion", "change"
    )
    assert got.rows() == [
        (1, "S701", "testis", "C62.9", "left", "present", None),
        (2, "S701", "testis", "C62.9", "left", "absent", None),
        (3, "S702", "skin", "C44.9", None, "present", None),
        (5, "S702", "breast", "C50.9", "right", "present", "increased"),
        (6, "S702", "kidney", "C64.9", "left", "present", "new"),
    ]
    assert unread.height == 0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            ("key: [USUBJID, TULNKID]", "key: [TULNKID]"),
            r"t.yaml, files\[\d\]: 'lookup\[0\]' joins on 2 column\(s\) of this file .*"
            r"give one 'key' column per 'by' column",
        ),
        (
            ('NEW: "New extramedullary disease in the"', "NEW: [a, b]"),
            r"t.yaml, files\[\d\]: 'recode.TRSTRESC' gives no single new value for NEW",
        ),
        (
            ("    recode:\n      TRSTRESC:\n", "    recode:\n      TRSTRESC: x\n      Y:\n"),
            r"t.yaml, files\[\d\]: 'recode.TRSTRESC' must map the column's delivered values",
        ),
    ],
)
def test_bad_tr_lookup_or_recode_is_refused_at_load_time_naming_file_and_key(
    tmp_path, change, words
):
    from blinaetl.ingest.sources import MappingError, load_source

    text = (templates_dir() / "sdtm.yaml").read_text()
    assert change[0] in text
    path = tmp_path / "t.yaml"
    path.write_text(text.replace(*change))
    with pytest.raises(MappingError, match=words):
        load_source(path)


def test_tr_whose_tu_lacks_the_link_column_is_rejected_naming_the_key(tmp_path):
    """TR's link columns must be in TU: a TU without TULNKID rejects TR naming the key."""
    tu = {k: v for k, v in TU.items() if k != "TULNKID"}
    domains = {"dm": DM, "mh": MH, "ex": EX, "ds": DS, "tu": tu, "tr": TR}
    landing, sources = setup_study(tmp_path, domains, "xpt", drop=("assessments",))
    f = file_row(ingest(landing, sources), "sdtm/PILOT01/tr.xpt")
    assert f["status"] == "rejected"
    assert "'TULNKID' named in 'lookup' of the mapping are not in the file" in f["error"]
    assert "sdtm.yaml" in f["fix"]


# --- study days across domains: --DY with the anchor DM.RFSTDTC ------------------------------

ANCHOR = '{file: "sdtm/*/dm.xpt", by: USUBJID, column: RFSTDTC}'
RS_DAYS = {
    "USUBJID": [S1, S1, S1, S2, S2, S3, S3, S4, S4],
    "RSTESTCD": ["OVRLRESP"] * 9,
    "RSSTRESC": ["CR", "NE", "NE", "CRi", "NE", "PD", "NE", "NE", "NE"],
    "RSDTC": ["2014-01-30", None, None, "2014-03", None, None, None, "2014-02", None],
    "RSDY": [29.0, 1.0, -1.0, 2.0, -1.0, -2.0, 0.0, None, None],
    "VISIT": ["WEEK 4", "DAY 1", "SCREENING", "DAY 2", "SCREENING", "SCREENING", "X", "X", "X"],
}


def _rs_with_study_days(text: str) -> str:
    doc = yaml.safe_load(text)
    rs = next(f for f in doc["files"] if f["table"] == "reported_responses")
    del rs["columns"]["response_date"]
    rs["derived_dates"] = yaml.safe_load(
        f"{{response_date: {{days: RSDY, date: RSDTC, day_one: true, anchor: {ANCHOR}}}}}"
    )
    ex = next(f for f in doc["files"] if f["table"] == "treatments")
    del ex["columns"]["start_date"], ex["columns"]["end_date"]
    ex["derived_dates"] = yaml.safe_load(
        f"{{start_date: {{days: EXSTDY, date: EXSTDTC, day_one: true, anchor: {ANCHOR}}},"
        f" end_date: {{days: EXENDY, date: EXENDTC, day_one: true, anchor: {ANCHOR}}}}}"
    )
    return yaml.safe_dump(doc, sort_keys=False)


def test_sdtm_study_days_anchored_on_dm_rfstdtc_where_the_dtc_is_missing_or_partial(tmp_path):
    ex = {
        **EX,
        "EXSTDTC": [None, "2014-03", "2014-01-06", None],
        "EXSTDY": [1.0, 1.0, 1.0, 1.0],
        "EXENDTC": ["2014-01-29", None, None, None],
        "EXENDY": [28.0, 28.0, 28.0, None],
    }
    domains = {"dm": DM, "mh": MH, "ex": ex, "ds": DS, "rs": RS_DAYS}
    landing, sources = setup_study(tmp_path, domains, "xpt", drop=("imaging_reports",))
    (sources / "sdtm.yaml").write_text(_rs_with_study_days((sources / "sdtm.yaml").read_text()))
    result = ingest(landing, sources)
    rs_rel, ex_rel = "sdtm/PILOT01/rs.xpt", "sdtm/PILOT01/ex.xpt"
    got = result.tables["reported_responses"].sort("_source_row")
    # RFSTDTC: S1 2014-01-02, S2 2014-03-01, S3 2014-01-06, S4 2014-02-01; day 1 = RFSTDTC,
    # day 2 = the day after, day -1 = the day before, day -2 two days before; no day 0
    assert got.select("_source_row", "mrn", "response_date").rows() == [
        (1, S1, dt.date(2014, 1, 30)),  # complete RSDTC wins (RSDY 29 agrees)
        (2, S1, dt.date(2014, 1, 2)),  # day 1
        (3, S1, dt.date(2014, 1, 1)),  # day -1
        (4, S2, dt.date(2014, 3, 2)),  # partial 2014-03, day 2: the study day, not 2014-03-01
        (5, S2, dt.date(2014, 2, 28)),  # day -1 across a month end
        (6, S3, dt.date(2014, 1, 4)),  # day -2
        (8, S4, dt.date(2014, 2, 1)),  # partial 2014-02, no day: imputed (first), recorded
    ]
    fails = result.quarantine_failures.filter(pl.col("_source_file") == rs_rel)
    assert sorted(fails.select("_source_row", "check_id").rows()) == [
        (7, "RSP_RESPONSE_DATE_TYPE"),  # day 0 does not exist
        (9, "RSP_RESPONSE_DATE_REQUIRED"),  # neither a date nor a day
    ]
    imputed = result.date_imputations.filter(pl.col("source_file") == rs_rel)
    assert imputed.select("source_row", "delivered", "imputed_date").rows() == [
        (8, "2014-02", dt.date(2014, 2, 1))
    ]
    # S2's partial EXSTDTC gave way to its study day: nothing imputed in EX
    assert result.date_imputations.filter(pl.col("source_file") == ex_rel).height == 0
    trt = result.tables["treatments"].sort("_source_row")
    assert trt.select("mrn", "start_date", "end_date").rows() == [
        (S1, dt.date(2014, 1, 2), dt.date(2014, 1, 29)),  # day 1; EXENDTC complete
        (S2, dt.date(2014, 3, 1), dt.date(2014, 3, 28)),  # partial EXSTDTC: day 1; day 28
        (S3, dt.date(2014, 1, 6), dt.date(2014, 2, 2)),  # complete EXSTDTC; day 28
        (S4, dt.date(2014, 2, 1), None),  # day 1; no end at all (end_date is optional)
    ]
    note = file_row(result, ex_rel)["error"]
    # both dates' anchors come from one join of DM
    assert note.count("lookup: RFSTDTC from sdtm/PILOT01/dm.xpt joined on USUBJID") == 1
    assert "(4 of 4 row(s) found)" in note
    assert file_row(result, rs_rel)["rows_read"] == 9


def test_sdtm_lb_study_days_fill_a_missing_lbdtc_and_keep_one_assessment_per_draw(tmp_path):
    # LB is long (one row per test) and pivoted to one assessment per subject and draw: with LBDY
    # in the pivot key the tests of a draw whose LBDTC is missing stay one record, and its date
    # comes from LBDY and DM.RFSTDTC (S1's RFSTDTC 2014-01-02: day 8 = 2014-01-09; S2's
    # 2014-03-01: day -1 = 2014-02-28, there is no day 0)
    lb = {
        "USUBJID": [S1, S1, S1, S1, S2, S2],
        "LBTESTCD": ["PLAT", "NEUT", "PLAT", "NEUT", "PLAT", "NEUT"],
        "LBSTRESN": ["120", "1.5", "90", "0.9", "35", "0.4"],
        "LBDTC": ["2014-01-30", "2014-01-30", None, None, None, None],
        "LBDY": [29.0, 29.0, 8.0, 8.0, -1.0, -1.0],
    }
    domains = {"dm": DM, "mh": MH, "ex": EX, "ds": DS, "lb": lb}
    landing, sources = setup_study(tmp_path, domains, "xpt", drop=("imaging_reports",))
    doc = yaml.safe_load((sources / "sdtm.yaml").read_text())
    doc["files"] = [f for f in doc["files"] if f["table"] != "reported_responses"]
    entry = next(f for f in doc["files"] if f["table"] == "assessments")
    entry["pivot"]["key"] = ["USUBJID", "LBDTC", "LBDY"]
    del entry["columns"]["assessment_date"]
    entry["derived_dates"] = yaml.safe_load(
        f"{{assessment_date: {{days: LBDY, date: LBDTC, day_one: true, anchor: {ANCHOR}}}}}"
    )
    (sources / "sdtm.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = ingest(landing, sources)
    got = result.tables["assessments"].sort("mrn", "assessment_date")
    assert got.select("mrn", "assessment_date", "platelets_10e9l", "anc_10e9l").rows() == [
        (S1, dt.date(2014, 1, 9), 90.0, 0.9),  # LBDTC missing: day 8
        (S1, dt.date(2014, 1, 30), 120.0, 1.5),  # complete LBDTC wins (LBDY 29 agrees)
        (S2, dt.date(2014, 2, 28), 35.0, 0.4),  # day -1 across a month end
    ]
    lb_file = file_row(result, "sdtm/PILOT01/lb.xpt")
    # six delivered test rows, three draws: each draw one record, none quarantined
    assert (lb_file["rows_read"], lb_file["rows_loaded"], lb_file["rows_quarantined"]) == (3, 3, 0)
    assert "pivot: 6 row(s) gave 3 record(s)" in lb_file["error"]


@pytest.mark.parametrize(
    ("anchor", "words"),
    [
        (
            '{file: "sdtm/*/dm.xpt", by: USUBJID}',
            r"t.yaml, files\[\d\]: 'derived_dates.response_date.anchor' lacks column",
        ),
        (
            '{file: "sdtm/*/dm.xpt", on: USUBJID, column: RFSTDTC}',
            r"'derived_dates.response_date.anchor' has a key that YAML reads as true",
        ),
        (
            '{file: "sdtm/*/dm.xpt", by: USUBJID, column: [RFSTDTC, RFENDTC]}',
            r"'derived_dates.response_date.anchor.column' must be one column",
        ),
        (
            '{file: "sdtm/*/dm.xpt", by: [USUBJID, X], key: USUBJID, column: RFSTDTC}',
            r"'derived_dates.response_date.anchor' joins on 2 column\(s\)",
        ),
        ("RSDY", r"'derived_dates.response_date' names one column twice"),
    ],
)
def test_bad_study_day_spec_is_refused_at_load_time_naming_file_and_key(tmp_path, anchor, words):
    from blinaetl.ingest.sources import MappingError, load_source

    doc = yaml.safe_load(_rs_with_study_days(template("xpt")))
    rs = next(f for f in doc["files"] if f["table"] == "reported_responses")
    rs["derived_dates"]["response_date"]["anchor"] = yaml.safe_load(anchor)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(MappingError, match=words):
        load_source(path)
