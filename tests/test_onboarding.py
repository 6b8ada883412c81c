"""Onboarding by configuration only: mapping folders, messages, row shaping, formats.

Expected values are worked by hand from the small files written in each test; every file's
rows are checked for conservation (rows read = loaded + quarantined).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
import typing
from pathlib import Path

import polars as pl
import pytest

from blinaetl.config import load_run_config
from blinaetl.ingest.landing import ingest_landing
from blinaetl.ingest.sources import MappingError, load_source, load_sources, resolve_sources_dir
from blinaetl.privacy import DEMO_KEY
from blinaetl.resources import sources_dir as bundled_sources

PATIENTS_CSV = (
    "MRN,birth_date,sex,diagnosis_date,ph_status,prior_lines,prior_hct\n"
    "P001,1970-01-01,F,2014-01-01,negative,2,no\n"
    "P002,1965-05-05,M,2013-03-03,positive,1,yes\n"
)
PATIENTS_COLUMNS = (
    "{mrn: MRN, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, "
    "ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}"
)


def mapping(files: str, site: str = "site: T1", kind: str = "clinical") -> str:
    return f"source: t_site\nkind: {kind}\n{site}\nfiles:\n" + textwrap.indent(
        textwrap.dedent(files).strip("\n"), "  "
    )


def setup(tmp_path: Path, yaml_text: str, files: dict[str, bytes | str]) -> tuple[Path, Path]:
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    (sources / "t.yaml").write_text(yaml_text)
    for rel, data in files.items():
        path = landing / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    landing.mkdir(exist_ok=True)
    return landing, sources


def run(landing: Path, sources: Path):
    result = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    assert_conserved(result)
    return result


def assert_conserved(result, restricted: Path | None = None) -> None:
    """Rows read = loaded + quarantined per file, the loaded rows counted in the validated
    tables, or, after a pipeline run (which releases them after the text stage), in the
    staging tables of its `restricted` database."""
    tables = list(result.tables.values()) if restricted is None else _staged(restricted)
    for f in result.files.iter_rows(named=True):
        assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"], f
        loaded = sum(t.filter(pl.col("_source_file") == f["path"]).height for t in tables)
        quarantined = result.quarantine_rows.filter(pl.col("_source_file") == f["path"]).height
        assert (loaded, quarantined) == (f["rows_loaded"], f["rows_quarantined"]), f


def _staged(restricted: Path) -> list[pl.DataFrame]:
    import duckdb

    con = duckdb.connect(str(restricted), read_only=True)
    try:
        names = con.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'staging' "
            "AND column_name = '_source_file' ORDER BY ALL"
        ).fetchall()
        return [con.sql(f"SELECT _source_file FROM staging.{n}").pl() for (n,) in names]
    finally:
        con.close()


def file_row(result, rel: str) -> dict:
    rows = result.files.filter(pl.col("path") == rel).to_dicts()
    assert rows, f"{rel} missing from the file listing"
    return rows[0]


# --- 1. mapping folders outside the package -----------------------------------------------


def test_sources_folder_order_given_then_env_then_bundled(tmp_path, monkeypatch):
    given, env = tmp_path / "given", tmp_path / "env"
    for folder in (given, env):
        folder.mkdir()
        (folder / "m.yaml").write_text("x: 1\n")
    monkeypatch.delenv("BLINAETL_SOURCES", raising=False)
    assert resolve_sources_dir(None) == bundled_sources()
    monkeypatch.setenv("BLINAETL_SOURCES", str(env))
    assert resolve_sources_dir(None) == env
    assert resolve_sources_dir(given) == given


def test_sources_folder_missing_or_empty_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("BLINAETL_SOURCES", str(tmp_path / "nowhere"))
    with pytest.raises(MappingError, match=r"BLINAETL_SOURCES.*nowhere.*not a folder.*unset"):
        resolve_sources_dir(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MappingError, match=r"empty.*holds no mapping file"):
        resolve_sources_dir(tmp_path / "empty")


def test_run_config_and_cli_accept_a_sources_folder(tmp_path):
    from blinaetl.cli import build_parser

    cfg = tmp_path / "run.yaml"
    cfg.write_text("landing: x\nsources: site_mappings\n")
    assert load_run_config(cfg)["sources"] == "site_mappings"
    args = build_parser().parse_args(["run", "--sources", "site_mappings"])
    assert args.sources == "site_mappings"


def test_ingest_from_env_folder_records_each_mapping_path_and_hash(tmp_path, monkeypatch):
    text = mapping(
        f"""
        - table: patients
          glob: "clinical/T1/patients_*.csv"
          format: csv
          columns: {PATIENTS_COLUMNS}
        """
    )
    landing, sources = setup(tmp_path, text, {"clinical/T1/patients_2026-01-01.csv": PATIENTS_CSV})
    monkeypatch.setenv("BLINAETL_SOURCES", str(sources))
    result = ingest_landing(landing, "run-1", DEMO_KEY)
    assert_conserved(result)
    assert result.tables["patients"]["site"].to_list() == ["T1", "T1"]
    assert result.mappings == [
        {
            "source_id": "t_site",
            "path": str((sources / "t.yaml").resolve()),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    ]


def test_manifest_lists_the_mappings(tmp_path):
    from blinaetl.config import RunConfig
    from blinaetl.reports.steward import build_manifest

    class Result:
        mappings: typing.ClassVar = [{"source_id": "a", "path": "/m/a.yaml", "sha256": "00"}]
        files = pl.DataFrame(
            schema={
                "path": pl.Utf8,
                "sha256": pl.Utf8,
                "source_id": pl.Utf8,
                "table_name": pl.Utf8,
                "rows_read": pl.Int64,
                "rows_loaded": pl.Int64,
                "rows_quarantined": pl.Int64,
                "status": pl.Utf8,
                "error": pl.Utf8,
            }
        )
        needs_attention = False

    (tmp_path / "landing").mkdir()
    cfg = RunConfig(landing=tmp_path / "landing", demo=True)
    assert build_manifest(cfg, Result(), {})["source_mappings"] == Result.mappings


# --- 7. messages ----------------------------------------------------------------------------


def test_missing_cycle_message_points_at_constants():
    from blinaetl.validate.contracts import load_contracts

    check = next(
        c for c in load_contracts()["treatments"].checks if c.id == "TRT_BLINA_CYCLE_REQUIRED"
    )
    assert "constants: {cycle: 1}" in check.message and "columns" in check.message


def test_unreadable_date_message_says_the_default_is_iso_and_where_the_value_is(tmp_path):
    text = mapping(
        f"""
        - table: patients
          glob: "clinical/T1/patients_*.csv"
          format: csv
          columns: {PATIENTS_COLUMNS}
        """
    )
    bad = PATIENTS_CSV.replace("2014-01-01", "01/31/2014")
    landing, sources = setup(tmp_path, text, {"clinical/T1/patients_2026-01-01.csv": bad})
    result = run(landing, sources)
    fail = result.quarantine_failures.row(0, named=True)
    assert fail["check_id"] == "PAT_DIAGNOSIS_DATE_TYPE"
    assert "ISO %Y-%m-%d" in fail["message"] and "'date_format'" in fail["message"]
    assert "raw_json" in fail["message"]
    assert "01/31/2014" in result.quarantine_rows["raw_json"][0]


def test_a_file_with_every_row_quarantined_is_labelled_quarantined(tmp_path):
    text = mapping(
        f"""
        - table: patients
          glob: "clinical/T1/patients_*.csv"
          format: csv
          columns: {PATIENTS_COLUMNS}
        """
    )
    rel_all, rel_part = "clinical/T1/patients_2026-01-01.csv", "clinical/T1/patients_x.csv"
    all_bad = PATIENTS_CSV.replace(",F,", ",Q,").replace(",M,", ",Q,")
    landing, sources = setup(tmp_path, text, {rel_all: all_bad})
    assert file_row(run(landing, sources), rel_all)["status"] == "all_quarantined"
    one_bad = PATIENTS_CSV.replace(",F,", ",Q,")
    landing, sources = setup(tmp_path / "b", text, {rel_part: one_bad})
    assert file_row(run(landing, sources), rel_part)["status"] == "partially_quarantined"


def test_bundled_mappings_still_load():
    assert {s.source for s in load_sources()} >= {"site01_clinical", "labnum_flow"}


def test_mapping_file_that_does_not_exist_names_it(tmp_path):
    with pytest.raises(MappingError, match=r"nope.yaml.*does not exist"):
        load_source(tmp_path / "nope.yaml")


# --- 2. fields a site did not collect -------------------------------------------------------

NC_CSV = "MRN,birth_date,sex,diagnosis_date,prior_hct\nP001,1970-01-01,F,2014-01-01,no\nP002,1965-05-05,M,2013-03-03,yes\n"
NC_MAPPING = mapping(
    """
    - table: patients
      glob: "clinical/T1/patients_*.csv"
      format: csv
      columns: {mrn: MRN, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, prior_hct: prior_hct}
      not_collected: [ph_status, prior_lines]
    """
)


def test_not_collected_fields_are_null_and_reported_not_applicable_at_that_site(tmp_path):
    rel = "clinical/T1/patients_2026-01-01.csv"
    landing, sources = setup(tmp_path, NC_MAPPING, {rel: NC_CSV})
    result = run(landing, sources)
    pats = result.tables["patients"]
    assert pats.height == 2 and result.quarantine_rows.height == 0
    assert pats["ph_status"].to_list() == [None, None]
    assert pats["prior_lines"].to_list() == [None, None]
    assert pats["prior_hct"].to_list() == [False, True]
    assert file_row(result, rel)["status"] == "loaded"
    nc = result.not_collected.select("site", "table_name", "field_name", "rows_delivered")
    assert nc.rows() == [("T1", "patients", "ph_status", 2), ("T1", "patients", "prior_lines", 2)]
    dq = result.dq_results.filter(pl.col("check_id").str.contains("@"))
    assert sorted(dq.select("check_id", "status", "rows_checked").rows()) == [
        ("PAT_PH_STATUS_REQUIRED@T1", "not_applicable", 2),
        ("PAT_PRIOR_LINES_REQUIRED@T1", "not_applicable", 2),
    ]
    assert dq["kahn"].unique().to_list() == ["completeness"]


def test_not_collected_at_one_site_does_not_excuse_an_empty_value_at_another(tmp_path):
    other = mapping(
        f"""
        - table: patients
          glob: "clinical/T2/patients_*.csv"
          format: csv
          columns: {PATIENTS_COLUMNS}
        """,
        site="site: T2",
    ).replace("source: t_site", "source: t2_site")
    landing, sources = setup(tmp_path, NC_MAPPING, {"clinical/T1/patients_1.csv": NC_CSV})
    (sources / "t2.yaml").write_text(other)
    empty_ph = PATIENTS_CSV.replace(",negative,", ",,")
    path = landing / "clinical/T2/patients_1.csv"
    path.parent.mkdir(parents=True)
    path.write_text(empty_ph)
    result = run(landing, sources)
    fails = result.quarantine_failures.filter(pl.col("site") == "T2")
    assert fails["check_id"].to_list() == ["PAT_PH_STATUS_REQUIRED"]
    assert result.tables["patients"].filter(pl.col("site") == "T1").height == 2
    status = dict(result.dq_results.select("check_id", "status").iter_rows())
    assert status["PAT_PH_STATUS_REQUIRED"] == "failed"
    assert status["PAT_PH_STATUS_REQUIRED@T1"] == "not_applicable"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("not_collected: [ph_status, prior_lines]", None),
        (
            "not_collected: [ph_status, colour]",
            r"t.yaml, files\[0\].*'not_collected' names field\(s\) colour",
        ),
        ("not_collected: [mrn]", r"'not_collected' names key field\(s\) mrn"),
        ("not_collected: ph_status", r"'not_collected' must be a list"),
    ],
)
def test_bad_not_collected_is_refused_at_load_time(tmp_path, change, words):
    path = tmp_path / "t.yaml"
    text = NC_MAPPING.replace("not_collected: [ph_status, prior_lines]", change)
    if "mrn]" in change:
        text = text.replace("{mrn: MRN, ", "{")
    path.write_text(text)
    if words is None:
        assert load_source(path).files[0].not_collected == ("ph_status", "prior_lines")
        return
    with pytest.raises(MappingError, match=words):
        load_source(path)


def test_not_collected_and_mapped_at_once_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        NC_MAPPING.replace("prior_hct: prior_hct}", "prior_hct: prior_hct, ph_status: Ph}")
    )
    with pytest.raises(MappingError, match=r"ph_status are in 'not_collected' and in 'columns'"):
        load_source(path)


def test_required_field_neither_mapped_nor_declared_names_not_collected_as_a_way(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        NC_MAPPING.replace("not_collected: [ph_status, prior_lines]", "not_collected: [ph_status]")
    )
    with pytest.raises(MappingError, match=r"prior_lines .*not_collected"):
        load_source(path)


# --- 3. row shaping -------------------------------------------------------------------------

PATIENTS_FILE = {"clinical/T1/patients_2026-01-01.csv": PATIENTS_CSV}
PATIENTS_ENTRY = f"""
- table: patients
  glob: "clinical/T1/patients_*.csv"
  format: csv
  columns: {PATIENTS_COLUMNS}
"""


def test_where_keeps_only_the_declared_rows_and_says_how_many_it_left_out(tmp_path):
    ds = (
        "USUBJID,DSCAT,DSDECOD,DSSTDTC\n"
        "P001,PROTOCOL MILESTONE,INFORMED CONSENT OBTAINED,2014-01-05\n"
        "P001,DISPOSITION EVENT,DEATH,2015-02-01\n"
        "P002,DISPOSITION EVENT,COMPLETED,2015-03-01\n"
        "P002,DISPOSITION EVENT,DEATH,2016-04-01\n"
        "P002,,DEATH,2016-04-02\n"
    )
    text = mapping(
        PATIENTS_ENTRY
        + """
- table: outcomes
  glob: "clinical/T1/ds_*.csv"
  format: csv
  where: {DSCAT: DISPOSITION EVENT, DSDECOD: {in: [DEATH]}}
  columns: {mrn: USUBJID, event: DSDECOD, event_date: DSSTDTC}
  codes: {event: {DEATH: death}}
"""
    )
    rel = "clinical/T1/ds_2026-01-01.csv"
    landing, sources = setup(tmp_path, text, {**PATIENTS_FILE, rel: ds})
    result = run(landing, sources)
    out = result.tables["outcomes"].sort("_source_row")
    assert out.select("mrn", "event", "event_date", "_source_row").rows() == [
        ("P001", "death", dt.date(2015, 2, 1), 3),
        ("P002", "death", dt.date(2016, 4, 1), 5),
    ]
    f = file_row(result, rel)
    assert (f["rows_read"], f["rows_loaded"], f["rows_quarantined"]) == (2, 2, 0)
    assert "3 of 5 delivered row(s) left out by the mapping's 'where'" in f["error"]


@pytest.mark.parametrize(
    ("where", "kept"),
    [
        ("{DSCAT: {not_equals: A}}", [3, 4]),  # an empty cell is not A
        ("{DSCAT: {not_in: [A, B]}}", [4]),
        ("{DSCAT: {present: false}}", [4]),
        ("{DSCAT: {present: true}}", [2, 3]),
        ("{DSCAT: {matches: '^[AB]$'}}", [2, 3]),
        ("{DSCAT: [A, B], X: '1'}", [2]),
    ],
)
def test_where_operators(tmp_path, where, kept):
    data = "MRN,DSCAT,X,DT\nP001,A,1,2015-01-01\nP002,B,2,2015-01-02\nP001,,1,2015-01-03\n"
    text = mapping(
        PATIENTS_ENTRY
        + f"""
- table: outcomes
  glob: "clinical/T1/o_*.csv"
  format: csv
  where: {where}
  columns: {{mrn: MRN, event_date: DT}}
  constants: {{event: last_contact}}
"""
    )
    landing, sources = setup(tmp_path, text, {**PATIENTS_FILE, "clinical/T1/o_1.csv": data})
    result = run(landing, sources)
    assert sorted(result.tables["outcomes"]["_source_row"].to_list()) == kept


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("where: {A: {like: x}}", r"'where' on column 'A' must have one operator of equals"),
        ("where: {A: {in: x}}", r"'where' in on column 'A' needs a non-empty list"),
        ("where: {A: {matches: '('}}", r"not a valid regular expression"),
        ("where: {A: {present: maybe}}", r"present on column 'A' must be true or false"),
        ("where: [A]", r"'where' must map column names"),
        ("pivot: {key: [K], name: N}", r"'pivot' lacks value"),
        ("pivot: {key: [K], name: N, value: N}", r"key, name and value must be different"),
        ("pivot: {key: K, name: N, value: V, sum: true}", r"'pivot' has unknown key\(s\) sum"),
        ("unpivot: {index: [K]}", r"'unpivot' lacks columns"),
        ("unpivot: {index: [K], columns: [K, L]}", r"index and columns overlap \(K\)"),
        (
            "unpivot: {index: K, columns: L, keep_empty: sometimes}",
            r"keep_empty' must be true or false",
        ),
        ("site_from: {codes: {a: b}}", r"'site_from' lacks column"),
        ("site_from: {column: S, codes: []}", r"'site_from.codes' must map"),
        (
            "derived_dates: {event: {days: D, anchor: A}}",
            r"'derived_dates' field 'event' is a string",
        ),
        ("derived_dates: {when: {days: D, anchor: A}}", r"names field 'when' that table"),
        ("derived_dates: {event_date: {days: D}}", r"derived_dates.event_date.*lacks anchor"),
        ("derived_dates: {event_date: {days: D, anchor: A, day_one: 1}}", r"day_one' must be true"),
        (
            "derived_dates: {event_date: {days: D, anchor: A}}",
            r"derived in 'derived_dates' and also given",
        ),
        (
            "pivot: {key: K, name: N, value: V}\nunpivot: {index: K, columns: L}",
            r"cannot both be set",
        ),
    ],
)
def test_bad_shaping_spec_is_refused_at_load_time_naming_file_and_key(tmp_path, spec, words):
    path = tmp_path / "site_x.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            source: x
            kind: clinical
            site: X
            files:
              - table: outcomes
                glob: "o_*.csv"
                format: csv
                columns: {{mrn: MRN, event: EV, event_date: DT}}
                {spec.replace(chr(10), chr(10) + " " * 16)}
            """
        )
    )
    with pytest.raises(MappingError, match=r"site_x.yaml, files\[0\]: .*" + words):
        load_source(path)


def test_where_on_a_column_the_file_lacks_rejects_the_file_naming_the_key(tmp_path):
    text = mapping(PATIENTS_ENTRY.replace("format: csv", "format: csv\n  where: {STATUS: ok}"))
    rel = "clinical/T1/patients_2026-01-01.csv"
    landing, sources = setup(tmp_path, text, PATIENTS_FILE)
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected"
    assert "'STATUS' named in 'where'" in f["error"] and "t.yaml" in f["fix"]


LB_LONG = (
    "USUBJID,LBDTC,LBTESTCD,LBSTRESN\n"
    "P001,2014-02-01,PLAT,150\n"
    "P001,2014-02-01,NEUT,2.5\n"
    "P001,2014-03-01,PLAT,80\n"
    "P002,2014-02-02,PLAT,40\n"
    "P002,2014-02-02,PLAT,45\n"
    "P002,2014-02-02,NEUT,0.9\n"
    "P002,2014-02-09,,7\n"
)
PIVOT_ENTRY = """
- table: assessments
  glob: "clinical/T1/lb_*.csv"
  format: csv
  pivot: {key: [USUBJID, LBDTC], name: LBTESTCD, value: LBSTRESN}
  columns: {mrn: USUBJID, assessment_date: LBDTC, platelets_10e9l: PLAT, anc_10e9l: NEUT}
"""


def test_pivot_long_to_wide_one_record_per_key_conflicts_quarantined(tmp_path):
    rel = "clinical/T1/lb_2026-01-01.csv"
    landing, sources = setup(
        tmp_path, mapping(PATIENTS_ENTRY + PIVOT_ENTRY), {**PATIENTS_FILE, rel: LB_LONG}
    )
    result = run(landing, sources)
    got = result.tables["assessments"].sort("_source_row")
    assert got.select(
        "mrn", "assessment_date", "platelets_10e9l", "anc_10e9l", "_source_row"
    ).rows() == [
        ("P001", dt.date(2014, 2, 1), 150.0, 2.5, 2),
        ("P001", dt.date(2014, 3, 1), 80.0, None, 4),
    ]
    # P002 2014-02-02 has two different platelet counts: one record, quarantined as unreadable
    q = result.quarantine_rows.filter(pl.col("_source_file") == rel)
    assert q["_source_row"].to_list() == [5]
    assert '"PLAT":"40 | 45"' in q["raw_json"][0]
    f = file_row(result, rel)
    assert (f["rows_read"], f["rows_loaded"], f["rows_quarantined"]) == (3, 2, 1)
    assert "1 row(s) with an empty 'LBTESTCD' left out" in f["error"]
    assert "1 cell(s) got more than one different 'LBSTRESN'" in f["error"]


def test_pivot_missing_a_named_column_rejects_the_file(tmp_path):
    rel = "clinical/T1/lb_2026-01-01.csv"
    data = LB_LONG.replace("LBTESTCD", "TESTCD")
    landing, sources = setup(
        tmp_path, mapping(PATIENTS_ENTRY + PIVOT_ENTRY), {**PATIENTS_FILE, rel: data}
    )
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected" and "'LBTESTCD' named in 'pivot'" in f["error"]


def test_unpivot_wide_cycles_to_one_row_each_empty_cells_skipped(tmp_path):
    wide = (
        "MRN,C1 start,C2 start,C3 start,Note\nP001,2014-02-01,2014-03-01,,x\nP002,2014-02-05,,,y\n"
    )
    text = mapping(
        PATIENTS_ENTRY
        + """
- table: treatments
  glob: "clinical/T1/cycles_*.csv"
  format: csv
  unpivot: {index: [MRN], columns: ["C* start"], name: which, value: started}
  columns: {mrn: MRN, cycle: which, start_date: started}
  codes: {cycle: {C1 start: "1", C2 start: "2", C3 start: "3"}}
  constants: {treatment: blinatumomab}
"""
    )
    rel = "clinical/T1/cycles_2026-01-01.csv"
    landing, sources = setup(tmp_path, text, {**PATIENTS_FILE, rel: wide})
    result = run(landing, sources)
    got = result.tables["treatments"].select("mrn", "cycle", "start_date", "_source_row")
    assert got.rows() == [
        ("P001", 1, dt.date(2014, 2, 1), 2),
        ("P001", 2, dt.date(2014, 3, 1), 2),
        ("P002", 1, dt.date(2014, 2, 5), 3),
    ]
    f = file_row(result, rel)
    assert (f["rows_read"], f["rows_loaded"], f["rows_quarantined"]) == (3, 3, 0)
    assert "2 row(s) x 3 column(s) gave 3 record(s); 3 empty cell(s) skipped" in f["error"]


def test_unpivot_quarantine_shows_the_wide_row_as_delivered(tmp_path):
    wide = "MRN,C1 start,C2 start\nP001,2014-02-01,2014-13-45\n"
    text = mapping(
        PATIENTS_ENTRY
        + """
- table: treatments
  glob: "clinical/T1/cycles_*.csv"
  format: csv
  unpivot: {index: MRN, columns: [C1 start, C2 start], name: which, value: started}
  columns: {mrn: MRN, cycle: which, start_date: started}
  codes: {cycle: {C1 start: "1", C2 start: "2"}}
  constants: {treatment: blinatumomab}
"""
    )
    rel = "clinical/T1/cycles_2026-01-01.csv"
    landing, sources = setup(tmp_path, text, {**PATIENTS_FILE, rel: wide})
    result = run(landing, sources)
    q = result.quarantine_rows.filter(pl.col("_source_file") == rel)
    assert q.height == 1 and q["_source_row"].to_list() == [2]
    assert '"C1 start":"2014-02-01"' in q["raw_json"][0] and "2014-13-45" in q["raw_json"][0]
    assert result.tables["treatments"]["cycle"].to_list() == [1]


SITES_CSV = (
    "SITEID,SUBJID,BRTHDTC,SEX,DX\n"
    "701,1001,1970-01-01,F,2014-01-01\n"
    "702,1001,1965-05-05,M,2013-03-03\n"
    "701,1002,1960-02-02,M,2013-04-04\n"
)
SITES_MAPPING = """
source: t_multi
kind: clinical
files:
  - table: patients
    glob: "clinical/DM/dm_*.csv"
    format: csv
    site_from: {column: SITEID, codes: {"701": SITE71, "702": SITE72}}
    columns: {mrn: SUBJID, birth_date: BRTHDTC, sex: SEX, diagnosis_date: DX}
    not_collected: [ph_status, prior_lines, prior_hct]
"""


def test_site_from_a_column_through_a_code_map(tmp_path):
    rel = "clinical/DM/dm_2026-01-01.csv"
    landing, sources = setup(tmp_path, SITES_MAPPING, {rel: SITES_CSV})
    result = run(landing, sources)
    got = result.tables["patients"].sort("_source_row").select("site", "mrn")
    assert got.rows() == [("SITE71", "1001"), ("SITE72", "1001"), ("SITE71", "1002")]
    # same MRN at two sites: two patients (identity is site + MRN)
    assert result.tables["patients"]["patient_key"].n_unique() == 3
    nc = result.not_collected.filter(pl.col("field_name") == "ph_status")
    assert sorted(nc.select("site", "rows_delivered").rows()) == [("SITE71", 2), ("SITE72", 1)]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            SITES_CSV.replace("702,", "799,"),
            "site code(s) 799 in 'SITEID' are not in 'site_from.codes'",
        ),
        (SITES_CSV.replace("702,", ","), "1 row(s) have no site in 'SITEID' (rows 3)"),
        (
            SITES_CSV.replace("SITEID", "SITE"),
            "column 'SITEID' named in 'site_from' is not in the file",
        ),
    ],
)
def test_site_from_unknown_or_missing_code_rejects_the_file(tmp_path, data, words):
    rel = "clinical/DM/dm_2026-01-01.csv"
    landing, sources = setup(tmp_path, SITES_MAPPING, {rel: data})
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected"
    assert words in f["error"], f["error"]
    assert "t.yaml" in f["fix"]


def test_site_from_without_source_site_needs_it_on_every_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        SITES_MAPPING.replace(
            '    site_from: {column: SITEID, codes: {"701": SITE71, "702": SITE72}}\n', ""
        )
    )
    with pytest.raises(
        MappingError,
        match=r"m.yaml: a clinical source needs 'site'.*'site_from' on every file entry \(files\[0\]",
    ):
        load_source(path)


FOLLOWUP = "MRN,DAYS,DXDATE\nP001,30,2014-01-01\nP002,-1,2013-06-01\nP002,0,2013-06-01\nP001,x,2014-01-01\nP001,,2014-01-01\n"


@pytest.mark.parametrize(
    ("day_one", "expected"),
    [
        # day 0 = anchor: 2014-01-01 + 30 = 2014-01-31; -1 = day before; 0 = the anchor
        (
            "false",
            [
                ("P001", dt.date(2014, 1, 31)),
                ("P002", dt.date(2013, 5, 31)),
                ("P002", dt.date(2013, 6, 1)),
            ],
        ),
        # SDTM study days: day 1 = anchor, no day 0: day 30 = 2014-01-30, day -1 = 2013-05-31
        ("true", [("P001", dt.date(2014, 1, 30)), ("P002", dt.date(2013, 5, 31))]),
    ],
)
def test_derived_dates_from_a_day_offset_and_an_anchor_column(tmp_path, day_one, expected):
    text = mapping(
        PATIENTS_ENTRY
        + f"""
- table: outcomes
  glob: "clinical/T1/fu_*.csv"
  format: csv
  columns: {{mrn: MRN}}
  constants: {{event: last_contact}}
  derived_dates: {{event_date: {{days: DAYS, anchor: DXDATE, day_one: {day_one}}}}}
"""
    )
    rel = "clinical/T1/fu_2026-01-01.csv"
    landing, sources = setup(tmp_path, text, {**PATIENTS_FILE, rel: FOLLOWUP})
    result = run(landing, sources)
    got = result.tables["outcomes"].sort("_source_row").select("mrn", "event_date")
    assert got.rows() == expected
    fails = dict(
        result.quarantine_failures.filter(pl.col("_source_file") == rel)
        .select("_source_row", "check_id")
        .iter_rows()
    )
    assert fails[5] == "OUT_EVENT_DATE_TYPE"  # "x" days
    assert fails[6] == "OUT_EVENT_DATE_REQUIRED"  # no days
    if day_one == "true":
        assert fails[4] == "OUT_EVENT_DATE_TYPE"  # there is no study day 0
    f = file_row(result, rel)
    assert "ignored" not in (f["error"] or ""), "DAYS and DXDATE are used, not ignored"


# --- 4. SAS, SPSS, Stata, Dataset-JSON ------------------------------------------------------


def _stat_frame():
    import pandas as pd

    return pd.DataFrame(
        {
            "PATID": ["P001", "P002"],
            "NAME": ["Mxller, Jxrg", "Roe, Rick"],
            "BRTHDT": [dt.date(1970, 1, 1), dt.date(1965, 5, 5)],
            "SEX": ["F", "M"],
            "DXDT": [dt.date(2014, 1, 1), dt.date(2013, 3, 3)],
            "PH": ["negative", "positive"],
            "PRIORL": [2.0, 1.0],
            "PRIORHCT": ["no", "yes"],
        }
    )


LABELS = {
    "PATID": "Patient identifier",
    "NAME": "Patient name",
    "BRTHDT": "Date of birth",
    "SEX": "Sex",
    "DXDT": "Date of diagnosis",
    "PH": "Philadelphia chromosome",
    "PRIORL": "Number of prior lines",
    "PRIORHCT": "Prior allogeneic HCT",
}
STAT_COLUMNS = (
    "{mrn: PATID, patient_name: NAME, birth_date: BRTHDT, sex: SEX, diagnosis_date: DXDT, "
    "ph_status: PH, prior_lines: PRIORL, prior_hct: PRIORHCT}"
)


def _write_stat(fmt: str, path: Path) -> None:
    import pyreadstat

    df = _stat_frame()
    if fmt == "xpt":
        pyreadstat.write_xport(df, str(path), column_labels=LABELS, table_name="DM")
    elif fmt == "sas7bdat":
        pyreadstat.write_sas7bdat(df, str(path), column_labels=LABELS)
    elif fmt == "sav":
        pyreadstat.write_sav(df, str(path), column_labels=LABELS)
    else:
        pyreadstat.write_dta(df, str(path), column_labels=LABELS)


@pytest.mark.parametrize("fmt", ["xpt", "sas7bdat", "sav", "dta"])
def test_statistical_package_files_load_by_mapping_with_labels(tmp_path, fmt):
    rel = f"clinical/T1/patients_2026-01-01.{fmt}"
    text = mapping(
        f"""
        - table: patients
          glob: "clinical/T1/patients_*.{fmt}"
          format: {fmt}
          date_format: "%d.%m.%Y"
          columns: {STAT_COLUMNS}
        """
    )
    landing, sources = setup(tmp_path, text, {})
    (landing / "clinical/T1").mkdir(parents=True)
    _write_stat(fmt, landing / rel)
    result = run(landing, sources)
    f = file_row(result, rel)
    assert (f["status"], f["rows_read"], f["rows_loaded"]) == ("loaded", 2, 2), f
    got = result.tables["patients"].sort("_source_row")
    assert got.select("mrn", "birth_date", "diagnosis_date", "prior_lines", "prior_hct").rows() == [
        ("P001", dt.date(1970, 1, 1), dt.date(2014, 1, 1), 2, False),
        ("P002", dt.date(1965, 5, 5), dt.date(2013, 3, 3), 1, True),
    ]
    assert got["_source_row"].to_list() == [1, 2]
    labels = dict(result.column_labels.select("field_name", "label").iter_rows())
    assert labels["diagnosis_date"] == "Date of diagnosis"
    assert labels["prior_lines"] == "Number of prior lines"


def test_a_declared_encoding_is_honoured_and_the_mappings_wins(tmp_path):
    import pyreadstat

    # SPSS declares UTF-8 in the file: read as such without any mapping key
    df = _stat_frame()
    df["NAME"] = ["Müller, Jörg", "Roe, Rick"]
    sav, xpt = tmp_path / "p.sav", tmp_path / "p.xpt"
    pyreadstat.write_sav(df, str(sav))
    from blinaetl.ingest.readers import read_statistical

    table = read_statistical(sav, "sav", "p.sav", "%Y-%m-%d", None)
    assert table.frame["NAME"].to_list() == ["Müller, Jörg", "Roe, Rick"]
    # an XPT declares no encoding: latin-1 bytes are read right when the mapping says latin-1
    pyreadstat.write_xport(_stat_frame(), str(xpt))
    data = xpt.read_bytes().replace(b"Mxller, Jxrg", "Müller, Jörg".encode("latin-1"))
    xpt.write_bytes(data)
    table = read_statistical(xpt, "xpt", "p.xpt", "%Y-%m-%d", "latin-1")
    assert table.frame["NAME"][0] == "Müller, Jörg"


def test_a_file_that_is_not_its_declared_format_is_rejected_with_the_fix(tmp_path):
    rel = "clinical/T1/patients_2026-01-01.sas7bdat"
    text = mapping(
        f"""
        - table: patients
          glob: "clinical/T1/patients_*.sas7bdat"
          format: sas7bdat
          columns: {STAT_COLUMNS}
        """
    )
    landing, sources = setup(tmp_path, text, {rel: PATIENTS_CSV})
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected" and "not a readable SAS7BDAT file" in f["error"]
    assert "format" in f["fix"]


def test_dataset_json_1_1_loads(tmp_path):
    import json

    doc = {
        "datasetJSONVersion": "1.1.0",
        "name": "DM",
        "columns": [
            {
                "itemOID": "IT.DM.USUBJID",
                "name": "USUBJID",
                "label": "Unique Subject Identifier",
                "dataType": "string",
            },
            {
                "itemOID": "IT.DM.BRTHDTC",
                "name": "BRTHDTC",
                "label": "Date/Time of Birth",
                "dataType": "date",
            },
            {"itemOID": "IT.DM.SEX", "name": "SEX", "label": "Sex", "dataType": "string"},
            {"itemOID": "IT.DM.AGE", "name": "AGE", "label": "Age", "dataType": "integer"},
        ],
        "rows": [["P001", "1970-01-01", "F", 44], ["P002", "1965-05-05", "M", None]],
    }
    path = tmp_path / "dm.json"
    path.write_text(json.dumps(doc))
    from blinaetl.ingest.readers import ReaderError, read_dataset_json

    table = read_dataset_json(path, "dm.json", "%Y-%m-%d")
    assert table.frame.rows() == [
        ("P001", "1970-01-01", "F", "44", 1),
        ("P002", "1965-05-05", "M", None, 2),
    ]
    assert table.labels["BRTHDTC"] == "Date/Time of Birth"
    doc["rows"][1] = ["P002"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ReaderError, match=r"record\(s\) 2 do not have 4 values"):
        read_dataset_json(path, "dm.json", "%Y-%m-%d")


def test_labels_become_staging_column_comments():
    import duckdb

    from blinaetl.ingest.landing import LABELS_SCHEMA
    from blinaetl.pipeline import warehouse_labels
    from blinaetl.validate.contracts import load_contracts
    from blinaetl.warehouse import models

    con = duckdb.connect()
    models.create_staging(con, load_contracts())
    labels = pl.DataFrame(
        [
            {
                "source_id": "a",
                "source_file": "f",
                "table_name": "patients",
                "field_name": "sex",
                "delivered_column": "SEX",
                "label": "Sex of subject",
            },
            {
                "source_id": "b",
                "source_file": "g",
                "table_name": "patients",
                "field_name": "sex",
                "delivered_column": "GENDER",
                "label": "Patient's gender",
            },
        ],
        schema=LABELS_SCHEMA,
    )
    warehouse_labels(con, labels, load_contracts())
    comment = con.execute(
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'patients' AND column_name = 'sex'"
    ).fetchall()[0][0]
    assert comment.endswith("Delivered as: 'Sex of subject' (a); 'Patient's gender' (b).")
    assert con.execute("SELECT count(*) FROM meta.column_labels").fetchall()[0][0] == 2


# --- 7. check-mapping -----------------------------------------------------------------------


def test_check_mapping_previews_masked_records_and_counts_without_writing(tmp_path, capsys):
    from blinaetl.cli import main

    bad = PATIENTS_CSV + "P003,1971-01-01,Q,2015-01-01,negative,0,no\n"
    text = mapping(PATIENTS_ENTRY)
    landing, sources = setup(tmp_path, text, {"clinical/T1/patients_2026-01-01.csv": bad})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(["check-mapping", str(sources / "t.yaml"), "--landing", str(landing)])
    out = capsys.readouterr().out
    assert code == 3  # a row would be quarantined
    assert "mapping " in out and "is valid: source t_site (clinical), site T1" in out
    assert "3 rows read = 2 loaded + 1 quarantined" in out
    assert "1 row(s) fail PAT_SEX_SET" in out
    assert "P001" not in out and "1970-01-01" not in out, "identifiers masked"
    assert "negative" in out and "***" in out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    main(
        ["check-mapping", str(sources / "t.yaml"), "--landing", str(landing), "--show-identifiers"]
    )
    assert "P001" in capsys.readouterr().out


def test_check_mapping_of_a_bad_mapping_exits_2_naming_file_and_key(tmp_path, capsys):
    from blinaetl.cli import main

    path = tmp_path / "site9.yaml"
    path.write_text(
        mapping(PATIENTS_ENTRY.replace("format: csv", "format: csv\n  pivot: {key: K}"))
    )
    assert main(["check-mapping", str(path)]) == 2
    err = capsys.readouterr().err
    assert "site9.yaml, files[0]" in err and "'pivot' lacks" in err


def test_check_mapping_without_landing_and_with_an_entry_matching_nothing(tmp_path, capsys):
    from blinaetl.cli import main

    landing, sources = setup(tmp_path, mapping(PATIENTS_ENTRY), {})
    assert main(["check-mapping", str(sources / "t.yaml")]) == 0
    assert "files were not read" in capsys.readouterr().out
    assert main(["check-mapping", str(sources / "t.yaml"), "--landing", str(landing)]) == 3
    assert "no landing file matches 'clinical/T1/patients_*.csv'" in capsys.readouterr().out


# --- 5. REDCap ------------------------------------------------------------------------------

REDCAP = Path(__file__).parent / "onboarding" / "redcap"
RECORDS = "redcap/SITE05/records_2026-01-01.csv"


def test_redcap_export_instruments_events_and_choices_by_mapping_alone(tmp_path):
    import shutil

    shutil.copytree(REDCAP, tmp_path / "p")
    result = run(tmp_path / "p" / "landing", tmp_path / "p" / "sources")
    pats = result.tables["patients"].sort("mrn")
    assert pats.select(
        "mrn", "birth_date", "sex", "ph_status", "prior_lines", "prior_hct", "site"
    ).rows() == [
        ("101", dt.date(1970, 1, 1), "F", "negative", 2, False, "SITE05"),
        ("102", dt.date(1965, 5, 5), "M", "positive", 1, True, "SITE05"),
        ("103", dt.date(1980, 2, 2), "U", "unknown", 0, False, "SITE05"),
    ]
    trt = result.tables["treatments"].sort("mrn", "cycle")
    assert trt.select("mrn", "treatment", "cycle", "start_date", "end_date").rows() == [
        ("101", "blinatumomab", 1, dt.date(2014, 2, 1), dt.date(2014, 3, 1)),
        ("101", "blinatumomab", 2, dt.date(2014, 3, 15), dt.date(2014, 4, 12)),
        ("102", "blinatumomab", 1, dt.date(2013, 5, 1), dt.date(2013, 5, 29)),
        ("103", "blinatumomab", 1, dt.date(2015, 7, 1), None),
    ]
    out = result.tables["outcomes"].sort("mrn", "event_date")
    assert out.select("mrn", "event", "event_date").rows() == [
        ("101", "relapse", dt.date(2014, 8, 1)),
        ("102", "last_contact", dt.date(2013, 12, 1)),
        ("102", "death", dt.date(2014, 1, 10)),
    ]
    assert result.quarantine_rows.height == 0
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    assert files[RECORDS + "#enrolment"]["rows_loaded"] == 3
    assert (
        "7 of 10 row(s) are not of instrument 'enrolment'" in files[RECORDS + "#enrolment"]["error"]
    )
    assert files[RECORDS + "#cycles"]["rows_loaded"] == 4
    assert files[RECORDS + "#followup"]["rows_loaded"] == 3
    assert files["redcap/SITE05/dictionary_2026-01-01.csv"]["status"] == "dictionary"
    assert not result.needs_attention
    # lineage: the row number of the export a person sees (header = line 1)
    assert sorted(result.tables["outcomes"]["_source_row"].to_list()) == [5, 8, 9]


def test_redcap_checkboxes_and_coded_choices_through_the_dictionary():
    from blinaetl.ingest.landing import read_raw
    from blinaetl.ingest.redcap import apply_redcap, parse_choices

    assert parse_choices("1, Chemotherapy | 2, Inotuzumab, ozogamicin") == {
        "1": "Chemotherapy",
        "2": "Inotuzumab, ozogamicin",
    }
    source = load_source(REDCAP / "sources" / "site05_redcap.yaml")
    fm = source.files[0]
    raw = read_raw(REDCAP / "landing" / RECORDS, fm, RECORDS)
    frame, delivered, _ = apply_redcap(raw, fm, source, REDCAP / "landing", RECORDS)
    assert frame["prior_tx"].to_list() == ["Chemotherapy; Inotuzumab, ozogamicin", "CAR-T", None]
    assert frame["sex"].to_list() == ["Female", "Male", "Unknown"]
    assert frame["prior_hct"].to_list() == ["No", "Yes", "No"]
    assert delivered["sex"].to_list() == ["2", "1", "3"], "the quarantine shows the codes sent"


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ("instrument: enrolment,", "instrument: enrol,"),
        ('dictionary_*.csv", instrument: enrolment', 'dict_*.csv", instrument: enrolment'),
    ],
)
def test_redcap_unknown_instrument_or_missing_dictionary_rejects_with_fix(tmp_path, edit, words):
    import shutil

    shutil.copytree(REDCAP, tmp_path / "p")
    path = tmp_path / "p" / "sources" / "site05_redcap.yaml"
    path.write_text(path.read_text().replace(edit, words))
    result = run(tmp_path / "p" / "landing", tmp_path / "p" / "sources")
    f = file_row(result, RECORDS + ("#enrol" if "enrol," in words else "#enrolment"))
    assert f["status"] == "rejected"
    assert ("'enrol' is not a form" if "enrol," in words else "no data dictionary matches") in f[
        "error"
    ]
    assert "site05_redcap.yaml" in f["fix"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("redcap: {instrument: x}", r"'redcap' lacks dictionary"),
        (
            "redcap: {dictionary: d.csv, instrument: x, repeating: often}",
            r"'redcap.repeating' must be true",
        ),
        (
            "redcap: {dictionary: d.csv, instrument: x, arms: [1]}",
            r"'redcap' has unknown key\(s\) arms",
        ),
    ],
)
def test_bad_redcap_spec_is_refused_at_load_time(tmp_path, spec, words):
    path = tmp_path / "r.yaml"
    path.write_text(
        mapping(
            f"""
            - table: outcomes
              glob: "x_*.csv"
              format: csv
              {spec}
              columns: {{mrn: record_id, event: e, event_date: d}}
            """
        )
    )
    with pytest.raises(MappingError, match=r"r.yaml, files\[0\]: " + words):
        load_source(path)
    path.write_text(path.read_text().replace("format: csv", "format: xlsx"))
    if "repeating" in words:
        with pytest.raises(MappingError, match=r"'redcap' reads REDCap's CSV export"):
            load_source(path)


# --- 6. CDISC SDTM --------------------------------------------------------------------------


def _write_sdtm(folder: Path) -> None:
    """A small SDTM study (pilot-like USUBJIDs over two sites) as XPT, written with pyreadstat."""
    import pandas as pd
    import pyreadstat

    folder.mkdir(parents=True)
    s1, s2, s3 = "PILOT01-701-1015", "PILOT01-701-1023", "PILOT01-702-1015"
    domains = {
        "dm": {
            "STUDYID": ["PILOT01"] * 3,
            "USUBJID": [s1, s2, s3],
            "SITEID": ["701", "701", "702"],
            "BRTHDTC": ["1950-03-04", "1961-07", "1948-12-24"],
            "SEX": ["F", "M", "UNDIFFERENTIATED"],
            "AGE": [63.0, 52.0, 65.0],
        },
        "ex": {
            "USUBJID": [s1, s1, s2, s3, s3],
            "EXTRT": ["BLINATUMOMAB", "BLINATUMOMAB", "Blinatumomab", "PLACEBO", "BLINATUMOMAB"],
            "EXGRPID": ["1", "2", "1", "1", "1"],
            "EXSTDTC": ["2014-01-02T08:30", "2014-02-13", "2014-03-01", "2014-01-05", "2014-01-06"],
            "EXENDTC": ["2014-01-29", "2014-03-12", "2014-03-28", "2014-02-01", "2014-02-02"],
        },
        "ds": {
            "USUBJID": [s1, s1, s2, s3],
            "DSCAT": [
                "PROTOCOL MILESTONE",
                "DISPOSITION EVENT",
                "DISPOSITION EVENT",
                "DISPOSITION EVENT",
            ],
            "DSDECOD": ["INFORMED CONSENT OBTAINED", "DEATH", "COMPLETED", "DEATH"],
            "DSSTDTC": ["2013-12-20", "2014-09-10", "2014-12-01", "2015-02"],
        },
        "mh": {
            "USUBJID": [s1, s1, s2, s3],
            "MHCAT": [
                "PRIMARY DIAGNOSIS",
                "GENERAL MEDICAL HISTORY",
                "PRIMARY DIAGNOSIS",
                "PRIMARY DIAGNOSIS",
            ],
            "MHTERM": ["B-ALL", "HYPERTENSION", "B-ALL", "B-ALL"],
            "MHSTDTC": ["2013-06-01", "2001", "2013-11", "2013-08-15"],
        },
        "tu": {
            "USUBJID": [s1, s3],
            "TUSEQ": [1.0, 1.0],
            "TULOC": ["TESTIS", "SKIN"],
            "TUMETHOD": ["PHYSICAL EXAMINATION", "BIOPSY"],
            "TUDTC": ["2014-01-01", "2014-01-04"],
        },
        "lb": {
            "USUBJID": [s1, s1, s1, s2, s2],
            "LBTESTCD": ["PLAT", "NEUT", "WBC", "PLAT", "NEUT"],
            "LBSTRESN": [120.0, 1.5, 4.2, 35.0, 0.4],
            "LBDTC": ["2014-01-30", "2014-01-30", "2014-01-30T07:00", "2014-03-29", "2014-03-29"],
        },
    }
    for name, data in domains.items():
        pyreadstat.write_xport(
            pd.DataFrame(data), str(folder / f"{name}.xpt"), table_name=name.upper()
        )


def test_sdtm_study_through_the_bundled_template_adjusted_by_yaml(tmp_path):
    from blinaetl.resources import templates_dir

    landing = tmp_path / "landing"
    _write_sdtm(landing / "sdtm" / "PILOT01")
    sources = tmp_path / "sources"
    sources.mkdir()
    # the user's adjustment: SITEID 701/702 become the registry's site codes
    text = (
        (templates_dir() / "sdtm.yaml")
        .read_text()
        .replace(
            'pattern: "^[^-]+-([^-]+)-"}',
            'pattern: "^[^-]+-([^-]+)-", codes: {"701": S701, "702": S702}}',
        )
    )
    (sources / "sdtm.yaml").write_text(text)
    result = run(landing, sources)
    pats = result.tables["patients"].sort("_source_row")
    # diagnosis from MH's primary-diagnosis record (lookup); 2013-11 completed to its first day
    assert pats.select("site", "mrn", "birth_date", "sex", "diagnosis_date").rows() == [
        ("S701", "PILOT01-701-1015", dt.date(1950, 3, 4), "F", dt.date(2013, 6, 1)),
        ("S701", "PILOT01-701-1023", dt.date(1961, 7, 1), "M", dt.date(2013, 11, 1)),
        ("S702", "PILOT01-702-1015", dt.date(1948, 12, 24), "U", dt.date(2013, 8, 15)),
    ]
    assert file_row(result, "sdtm/PILOT01/mh.xpt")["status"] == "lookup"
    trt = result.tables["treatments"].sort("_source_row")
    assert trt.select("mrn", "cycle", "start_date", "end_date").rows() == [
        ("PILOT01-701-1015", 1, dt.date(2014, 1, 2), dt.date(2014, 1, 29)),
        ("PILOT01-701-1015", 2, dt.date(2014, 2, 13), dt.date(2014, 3, 12)),
        ("PILOT01-701-1023", 1, dt.date(2014, 3, 1), dt.date(2014, 3, 28)),
        ("PILOT01-702-1015", 1, dt.date(2014, 1, 6), dt.date(2014, 2, 2)),
    ]
    out = result.tables["outcomes"].sort("_source_row")
    assert out.select("mrn", "event", "event_date").rows() == [
        ("PILOT01-701-1015", "death", dt.date(2014, 9, 10)),
        ("PILOT01-702-1015", "death", dt.date(2015, 2, 1)),  # 2015-02: first day
    ]
    # LB pivots on the LBDTC text: subject 1015's WBC carries a time its other tests lack, so
    # the draw gives two records on 2014-01-30, both quarantined by ASM_UNIQUE (one per date)
    lab = result.tables["assessments"]
    assert lab.select("mrn", "assessment_date", "platelets_10e9l", "anc_10e9l").rows() == [
        ("PILOT01-701-1023", dt.date(2014, 3, 29), 35.0, 0.4)
    ]
    lb_fail = result.quarantine_failures.filter(pl.col("_source_file") == "sdtm/PILOT01/lb.xpt")
    # ... and the WBC-only record holds none of the counts ASM_ANY_VALUE looks for (a warning)
    assert sorted(lb_fail["check_id"].to_list()) == ["ASM_ANY_VALUE", "ASM_UNIQUE", "ASM_UNIQUE"]
    assert file_row(result, "sdtm/PILOT01/lb.xpt")["rows_read"] == 3
    imputed = result.date_imputations.select(
        "table_name", "field_name", "delivered", "rule", "imputed_date"
    )
    assert sorted(imputed.rows()) == [
        ("outcomes", "event_date", "2015-02", "first", dt.date(2015, 2, 1)),
        ("patients", "birth_date", "1961-07", "first", dt.date(1961, 7, 1)),
        ("patients", "diagnosis_date", "2013-11", "first", dt.date(2013, 11, 1)),
    ]
    nc = result.not_collected.filter(pl.col("field_name") == "ph_status")
    assert sorted(nc.select("site", "rows_delivered").rows()) == [("S701", 2), ("S702", 1)]
    f = file_row(result, "sdtm/PILOT01/ex.xpt")
    assert "1 of 5 delivered row(s) left out by the mapping's 'where'" in f["error"]
    img = result.tables["imaging_reports"].sort("_source_row")
    assert img.select("accession", "modality", "report_text").rows() == [
        ("PILOT01-701-1015-TU1", "exam", "Extramedullary disease identified in the TESTIS."),
        ("PILOT01-702-1015-TU1", "pathology", "Extramedullary disease identified in the SKIN."),
    ]
    from blinaetl.text import read_em_text

    mentions, _ = read_em_text(
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
    got = mentions.sort("_source_row").select("site", "site_group", "icdo3", "assertion")
    assert got.rows() == [
        ("S701", "testis", "C62.9", "present"),
        ("S702", "skin", "C44.9", "present"),
    ]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "first",
            [dt.date(2014, 3, 5), dt.date(2014, 3, 5), dt.date(2014, 2, 1), dt.date(2014, 1, 1)],
        ),
        (
            "middle",
            [dt.date(2014, 3, 5), dt.date(2014, 3, 5), dt.date(2014, 2, 15), dt.date(2014, 7, 1)],
        ),
        (
            "last",
            [dt.date(2014, 3, 5), dt.date(2014, 3, 5), dt.date(2014, 2, 28), dt.date(2014, 12, 31)],
        ),
        ("none", [dt.date(2014, 3, 5), dt.date(2014, 3, 5), None, None]),
    ],
)
def test_iso8601_dates_and_partial_date_rules(rule, expected):
    from blinaetl.ingest.landing import iso8601_date

    values = pl.DataFrame(
        {"d": ["2014-03-05", "2014-03-05T10:22:05", "2014-02", "2014", "2014-13", "x"]}
    )
    got = values.select(iso8601_date(pl.col("d"), rule))["d"].to_list()
    assert got == [*expected, None, None]


def test_partial_date_rule_is_a_definition_the_run_can_override(tmp_path):
    from blinaetl.warehouse.models import DefinitionError

    text = mapping(
        f"""
        - table: patients
          glob: "clinical/T1/patients_*.csv"
          format: csv
          date_format: iso8601
          columns: {PATIENTS_COLUMNS}
        """
    )
    landing, sources = setup(
        tmp_path,
        text,
        {"clinical/T1/patients_1.csv": PATIENTS_CSV.replace("1970-01-01", "1970-06")},
    )
    result = ingest_landing(
        landing, "r", DEMO_KEY, sources_dir=sources, definitions={"partial_date_imputation": "none"}
    )
    assert_conserved(result)
    assert result.quarantine_failures["check_id"].to_list() == ["PAT_BIRTH_DATE_TYPE"]
    assert result.date_imputations.height == 0
    result = run(landing, sources)  # default: first
    assert result.date_imputations.select("delivered", "rule", "imputed_date").rows() == [
        ("1970-06", "first", dt.date(1970, 6, 1))
    ]
    with pytest.raises(DefinitionError, match="partial_date_imputation"):
        ingest_landing(
            landing,
            "r",
            DEMO_KEY,
            sources_dir=sources,
            definitions={"partial_date_imputation": "guess"},
        )


def test_site_from_pattern_needs_one_group(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        SITES_MAPPING.replace('codes: {"701": SITE71, "702": SITE72}', 'pattern: "^(a)(b)"')
    )
    with pytest.raises(
        MappingError, match=r"p.yaml, files\[0\]: 'site_from.pattern' must have exactly one"
    ):
        load_source(path)


# --- end to end: a site that did not collect a field, visible downstream ------------------


def test_a_site_that_did_not_collect_fields_is_visible_in_database_dictionary_and_report(tmp_path):
    """A small demo cohort (20 patients) plus SITE03 from its own mapping folder, full run."""
    import json
    import shutil

    import duckdb

    from blinaetl.config import RunConfig
    from blinaetl.pipeline import run_pipeline
    from blinaetl.reports.dictionary import write_data_dictionary
    from blinaetl.synth import generate

    generate(tmp_path / "cohort", n_patients=20, seed=5)
    landing = tmp_path / "cohort" / "landing"
    sources = tmp_path / "site_mappings"
    shutil.copytree(bundled_sources(), sources)
    (sources / "site03.yaml").write_text(
        textwrap.dedent(
            """
            source: site03_clinical
            kind: clinical
            site: SITE03
            files:
              - table: patients
                glob: "clinical/SITE03/patients_*.csv"
                format: csv
                columns: {mrn: MRN, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, prior_hct: prior_hct}
                not_collected: [ph_status, prior_lines]
              - table: treatments
                glob: "clinical/SITE03/treatments_*.csv"
                format: csv
                columns: {mrn: MRN, cycle: cycle, start_date: start_date}
                constants: {treatment: blinatumomab}
            """
        )
    )
    site = landing / "clinical" / "SITE03"
    site.mkdir(parents=True)
    (site / "patients_2026-09-01.csv").write_text(NC_CSV)
    (site / "treatments_2026-09-01.csv").write_text(
        "MRN,cycle,start_date\nP001,1,2014-02-01\nP002,1,2013-04-01\n"
    )
    cfg = RunConfig(
        landing=landing,
        warehouse=tmp_path / "wh",
        reports=tmp_path / "rp",
        demo=True,
        gx=False,
        sources_dir=sources,
    )
    summary, result = run_pipeline(cfg)
    assert len(result.tables) == 0  # released after the text stage: counted as staged
    assert_conserved(result, cfg.restricted_path)
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        listed = con.execute(
            "SELECT site, table_name, field_name, source_ids, rows_delivered "
            "FROM curated.site_fields_not_collected ORDER BY ALL"
        ).fetchall()
        site03 = con.execute(
            "SELECT count(*), count(ph_status), count(prior_lines), count(prior_hct) "
            "FROM curated.patients WHERE site = 'SITE03'"
        ).fetchall()
    finally:
        con.close()
    assert listed == [
        ("SITE03", "patients", "ph_status", "site03_clinical", 2),
        ("SITE03", "patients", "prior_lines", "site03_clinical", 2),
    ]
    assert site03 == [(2, 0, 0, 2)]
    dictionary = write_data_dictionary(cfg.analytics_path, tmp_path / "dict.md").read_text()
    assert "## Fields not collected by site" in dictionary
    assert "| SITE03 | `patients` | `ph_status` | site03_clinical |" in dictionary
    dq = json.loads((summary.report_dir / "dq_results.json").read_text())
    by_id = {d["check_id"]: d for d in dq}
    assert by_id["PAT_PH_STATUS_REQUIRED@SITE03"]["status"] == "not_applicable"
    assert by_id["PAT_PRIOR_LINES_REQUIRED@SITE03"]["status"] == "not_applicable"
    html = (summary.report_dir / "index.html").read_text()
    assert 'id="not-collected"' in html
    assert "<td>SITE03</td><td>patients</td><td><code>ph_status</code></td>" in html
    manifest = json.loads((summary.report_dir / "manifest.json").read_text())
    paths = {m["source_id"]: m["path"] for m in manifest["source_mappings"]}
    assert paths["site03_clinical"] == str((sources / "site03.yaml").resolve())


LOOKUP_ENTRY = """
- table: treatments
  glob: "clinical/T1/ex_*.csv"
  format: csv
  date_format: iso8601
  lookup:
    - {file: "clinical/T1/dm_*.csv", by: USUBJID, columns: [RFSTDTC], where: {ARM: {not_equals: SCREEN FAILURE}}}
  columns: {mrn: USUBJID, cycle: EXGRPID}
  constants: {treatment: blinatumomab}
  derived_dates: {start_date: {days: EXSTDY, anchor: RFSTDTC, day_one: true}}
"""
DM_LOOKUP = "USUBJID,RFSTDTC,ARM\nP001,2014-02-01T09:00,BLINA\nP002,2013-04-10,BLINA\nP002,,SCREEN FAILURE\n"
EX_DAYS = "USUBJID,EXGRPID,EXSTDY\nP001,1,1\nP001,2,43\nP002,1,1\nP009,1,1\n"


def test_lookup_joins_an_anchor_from_another_file_for_study_days(tmp_path):
    rel = "clinical/T1/ex_2026-01-01.csv"
    files = {**PATIENTS_FILE, rel: EX_DAYS, "clinical/T1/dm_2026-01-01.csv": DM_LOOKUP}
    landing, sources = setup(tmp_path, mapping(PATIENTS_ENTRY + LOOKUP_ENTRY), files)
    result = run(landing, sources)
    got = result.tables["treatments"].sort("_source_row").select("mrn", "cycle", "start_date")
    # study day 1 = RFSTDTC's date; day 43 = 42 days later
    assert got.rows() == [
        ("P001", 1, dt.date(2014, 2, 1)),
        ("P001", 2, dt.date(2014, 3, 15)),
        ("P002", 1, dt.date(2013, 4, 10)),
    ]
    # P009 is in no DM row: no anchor, its date unreadable and the row quarantined
    q = result.quarantine_failures.filter(pl.col("_source_file") == rel)
    assert sorted(q.filter(pl.col("_source_row") == 5)["check_id"].to_list()) == [
        "TRT_KNOWN_PATIENT",
        "TRT_START_DATE_TYPE",
    ]
    assert file_row(result, "clinical/T1/dm_2026-01-01.csv")["status"] == "lookup"
    assert "3 of 4 row(s) found" in file_row(result, rel)["error"]


def test_lookup_with_several_rows_per_key_or_no_file_rejects_with_the_fix(tmp_path):
    rel = "clinical/T1/ex_2026-01-01.csv"
    text = mapping(
        PATIENTS_ENTRY + LOOKUP_ENTRY.replace(", where: {ARM: {not_equals: SCREEN FAILURE}}", "")
    )
    files = {**PATIENTS_FILE, rel: EX_DAYS, "clinical/T1/dm_2026-01-01.csv": DM_LOOKUP}
    landing, sources = setup(tmp_path, text, files)
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected" and "2 row(s) sharing a 'USUBJID'" in f["error"]
    assert "lookup.where" in f["fix"]
    landing, sources = setup(
        tmp_path / "b", mapping(PATIENTS_ENTRY + LOOKUP_ENTRY), {**PATIENTS_FILE, rel: EX_DAYS}
    )
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected" and "no landing file matches 'lookup[0].file'" in f["error"]


def test_bad_lookup_spec_is_refused_at_load_time(tmp_path):
    path = tmp_path / "l.yaml"
    path.write_text(mapping(PATIENTS_ENTRY + LOOKUP_ENTRY.replace("by: USUBJID, ", "")))
    with pytest.raises(MappingError, match=r"l.yaml, files\[1\]: 'lookup\[0\]' lacks by"):
        load_source(path)
    path.write_text(
        mapping(
            PATIENTS_ENTRY
            + LOOKUP_ENTRY.replace("{ARM: {not_equals: SCREEN FAILURE}}", "{ARM: {like: x}}")
        )
    )
    with pytest.raises(MappingError, match=r"files\[1\], lookup\[0\]: 'where' on column 'ARM'"):
        load_source(path)


def test_composed_column_from_several_columns_and_a_missing_one_rejects(tmp_path):
    text = mapping(PATIENTS_ENTRY.replace("{mrn: MRN,", '{mrn: "{SITEPREFIX}-{MRN}",'))
    data = (
        PATIENTS_CSV.replace("MRN,", "MRN,SITEPREFIX,")
        .replace("P001,", "P001,A,")
        .replace("P002,", "P002,,")
    )
    rel = "clinical/T1/patients_2026-01-01.csv"
    landing, sources = setup(tmp_path, text, {rel: data})
    result = run(landing, sources)
    assert result.tables["patients"]["mrn"].to_list() == ["A-P001"]
    # a row lacking a part gets no value: the required MRN is empty and the row quarantined
    assert result.quarantine_failures["check_id"].to_list() == ["PAT_MRN_REQUIRED"]
    assert "ignored" not in (file_row(result, rel)["error"] or "")
    landing, sources = setup(tmp_path / "b", text, {rel: PATIENTS_CSV})
    f = file_row(run(landing, sources), rel)
    assert f["status"] == "rejected" and "'SITEPREFIX' named in 'columns.mrn'" in f["error"]
