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


def test_sdtm_label_only_study_gets_its_cr_count_and_rate(tmp_path):
    import duckdb

    from blinaetl.pipeline import RunConfig, run_pipeline

    domains = {"dm": DM, "mh": MH, "ex": EX, "ds": DS, "rs": RS}
    landing, sources = setup_study(
        tmp_path, domains, "xpt", drop=("imaging_reports", "assessments")
    )
    cfg = RunConfig(
        landing=landing,
        warehouse=tmp_path / "wh",
        reports=tmp_path / "rp",
        sources_dir=sources,
        demo=True,
        gx=False,
    )
    run_pipeline(cfg)
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
