"""Hostile input is ordinary input (design principle 10): markup, formulas, links out of the
landing folder, and the CLI's exit status for each kind of failure (issue 18)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import polars as pl
import pytest

from blinaetl import cli
from blinaetl.ingest.landing import FileJob, ingest_landing, plan_files, read_file
from blinaetl.privacy import DEMO_KEY, MissingSecretError, resolve_secret
from blinaetl.reports.html import template_env
from blinaetl.reports.queries import QUERY_SCHEMA, previous_listing, write_queries
from blinaetl.reports.steward import render_steward_html, top_failing_checks
from tests.t1_site import T1_PATIENTS_MAPPING

SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'


# --- HTML: every template escapes every value ----------------------------------------------


def test_steward_report_escapes_file_names_messages_and_terms():
    manifest = {
        "run_id": "r1",
        "mode": "demo",
        "written_at": "now",
        "code_version": {"blinaetl": "0"},
        "needs_attention": True,
        "totals": {"files": 1, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0},
        "files": [
            {
                "path": f"clinical/S1/{SCRIPT}.csv",
                "table_name": "patients",
                "rows_read": 0,
                "rows_loaded": 0,
                "rows_quarantined": 0,
                "status": "rejected",
                "error": f"clinical/S1/{IMG}.csv: is empty",
                "fix": f"send it again {SCRIPT}",
            }
        ],
    }
    html = render_steward_html(
        manifest=manifest,
        kahn_groups=[],
        checks=[],
        top_failing=[],
        status_order=(),
        queries={"new": 0, "open": 0, "resolved": 0},
        changes=None,
        listings={
            "cd19_unreadable": [{"source_id": "lab", "descriptor": IMG, "n": 1}],
            "em_unmapped": [{"term": SCRIPT, "n_mentions": 1, "n_reports": 1}],
            "response_discordance": [],
        },
        disappeared=0,
        has_data_docs=False,
        gx=None,
    )
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert html.count("&lt;script&gt;") == 3  # file name, fix, EM term


def test_every_html_template_is_rendered_with_autoescape():
    env = template_env()
    names = env.list_templates()
    assert "steward_report.html.j2" in names and "study_report.html.j2" in names
    for name in names:
        source = env.loader.get_source(env, name)[0]
        assert "|safe" not in source.replace(" ", ""), f"{name} marks a value as safe markup"
    for name in names:  # on for every template, whatever its name ends in
        on = env.autoescape(name) if callable(env.autoescape) else env.autoescape
        assert on is True, name
    hostile = env.from_string("{{ v }}").render(v=SCRIPT)
    assert hostile == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


def test_top_failing_checks_lists_failed_and_error_checks_only():
    dq = pl.DataFrame(
        {
            "check_id": ["PASSED_WITH_ROWS", "FAILED", "ERROR", "CLEAN"],
            "status": ["passed", "failed", "error", "passed"],
            "rows_failed": [7, 3, 0, 0],
        }
    )
    assert top_failing_checks(dq)["check_id"].to_list() == ["ERROR", "FAILED"]


# --- CSV and XLSX: no cell is run as a formula -----------------------------------------------

HOSTILE_CELLS = [
    '=HYPERLINK("http://evil","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    "'=already quoted",
    "plain text",
    "a=b in the middle",
]


def _listing(cells: list[str]) -> pl.DataFrame:
    n = len(cells)
    base = {c: [None] * n for c in QUERY_SCHEMA}
    base |= {
        "query_id": [f"Q{i}" for i in range(n)],
        "status": ["new"] * n,
        "first_seen_run": ["r1"] * n,
        "source_file": cells,
        "source_row": list(range(n)),
        "message": cells,
    }
    return pl.DataFrame(base, schema=QUERY_SCHEMA)


def test_queries_csv_escapes_formula_cells_and_reads_back_as_written(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    write_queries(_listing(HOSTILE_CELLS), run)
    raw = pl.read_csv(run / "queries.csv", infer_schema=False)
    escaped = dict(zip(HOSTILE_CELLS, raw["message"].to_list(), strict=True))
    for cell in HOSTILE_CELLS[:6]:
        assert escaped[cell] == "'" + cell, "OWASP: a leading single quote"
    assert escaped["'=already quoted"] == "''=already quoted"
    assert escaped["plain text"] == "plain text"
    assert escaped["a=b in the middle"] == "a=b in the middle"
    text = (run / "queries.csv").read_text()
    assert text.splitlines()[0].startswith('"query_id","status"'), "every field quoted"
    back = previous_listing(tmp_path, "r2")
    assert back["message"].to_list() == HOSTILE_CELLS
    assert back["source_file"].to_list() == HOSTILE_CELLS


def test_queries_xlsx_writes_text_cells_as_strings_never_formulas(tmp_path):
    write_queries(_listing(HOSTILE_CELLS), tmp_path)
    with zipfile.ZipFile(tmp_path / "queries.xlsx") as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
        shared = book.read("xl/sharedStrings.xml").decode()
    assert "<f>" not in sheet and "<f " not in sheet, "no formula cell"
    assert "<hyperlink" not in sheet, "no link"
    assert "=HYPERLINK(&quot;http://evil&quot;" in shared or '=HYPERLINK("http://evil"' in shared
    assert "@SUM(A1)" in shared and "+1+1" in shared


# --- landing paths: links out of the landing folder and '..' are refused ---------------------

PATIENTS = (
    "MRN,patient_name,birth_date,sex,diagnosis_date,ph_status,prior_lines,prior_hct\n"
    "P001,Jane,1970-01-01,F,2014-01-01,negative,2,no\n"
)
MAPPING = T1_PATIENTS_MAPPING


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    (landing / "clinical" / "T1").mkdir(parents=True)
    sources.mkdir()
    (sources / "t.yaml").write_text(MAPPING)
    return landing, sources


def _files(result) -> dict[str, dict]:
    return {r["path"]: r for r in result.files.to_dicts()}


def test_link_to_a_file_outside_the_landing_folder_is_refused_and_not_read(tmp_path):
    landing, sources = _setup(tmp_path)
    outside = tmp_path / "elsewhere" / "patients.csv"
    outside.parent.mkdir()
    outside.write_text(PATIENTS.replace("P001", "X999"))
    (landing / "clinical/T1/patients_20260101.csv").symlink_to(outside)
    (landing / "clinical/T1/patients_20260102.csv").write_text(PATIENTS)
    result = ingest_landing(landing, "r", DEMO_KEY, sources_dir=sources)
    files = _files(result)
    link = files["clinical/T1/patients_20260101.csv"]
    assert link["status"] == "rejected"
    assert "outside the landing folder" in link["error"] and "not read" in link["error"]
    assert "landing folder" in link["fix"]
    assert link["sha256"] is None, "not a byte of it was read"
    assert files["clinical/T1/patients_20260102.csv"]["status"] == "loaded"
    assert result.tables["patients"]["mrn"].to_list() == ["P001"]


def test_link_inside_the_landing_folder_is_read(tmp_path):
    landing, sources = _setup(tmp_path)
    real = landing / "clinical/T1/patients_20260101.csv"
    real.write_text(PATIENTS)
    (landing / "clinical/T1/patients_20260102.csv").symlink_to(real)
    files = _files(ingest_landing(landing, "r", DEMO_KEY, sources_dir=sources))
    assert files["clinical/T1/patients_20260102.csv"]["status"] == "loaded"


def test_linked_folder_and_dangling_link_are_refused(tmp_path):
    landing, sources = _setup(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "patients_20260101.csv").write_text(PATIENTS)
    (landing / "clinical" / "T2").symlink_to(outside, target_is_directory=True)
    (landing / "clinical/T1/patients_20260103.csv").symlink_to(landing / "clinical/T1/gone.csv")
    files = _files(ingest_landing(landing, "r", DEMO_KEY, sources_dir=sources))
    assert "clinical/T2/patients_20260101.csv" not in files, "a linked folder is not walked"
    assert files["clinical/T2"]["status"] == "rejected"
    assert "outside the landing folder" in files["clinical/T2"]["error"]
    dangling = files["clinical/T1/patients_20260103.csv"]
    assert dangling["status"] == "rejected" and "link to nothing" in dangling["error"]


def test_dot_dot_path_is_refused_at_reading_time(tmp_path):
    landing, sources = _setup(tmp_path)
    (landing / "clinical/T1/patients_20260101.csv").write_text(PATIENTS)
    (tmp_path / "secret.csv").write_text(PATIENTS)
    plan = plan_files(landing, sources)
    job = plan.jobs[0]
    sneaky = FileJob(
        landing / "clinical/T1/../../../secret.csv",
        "clinical/T1/../../../secret.csv",
        job.source_id,
        job.index,
    )
    row = read_file(sneaky, plan, "r")
    assert isinstance(row, dict) and row["status"] == "rejected"
    assert "leaves the landing folder" in row["error"]


# --- CLI exit status -----------------------------------------------------------------------


def _db(tmp_path: Path) -> Path:
    path = tmp_path / "a.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    return path


def test_sql_exits_1_on_a_sql_error_and_0_on_success(tmp_path, capsys):
    db = str(_db(tmp_path))
    assert cli.main(["sql", "SELECT x FROM t", "--db", db]) == cli.EXIT_OK
    assert capsys.readouterr().out == "x\n1\n"
    assert cli.main(["sql", "SELECT nope FROM t", "--db", db]) == cli.EXIT_FAILED
    assert "nope" in capsys.readouterr().err


def test_sql_from_stdin_exits_1_when_one_query_fails(tmp_path, monkeypatch, capsys):
    import io

    db = str(_db(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT x FROM t;\nSELECT bad syntax here;\n"))
    assert cli.main(["sql", "--db", db]) == cli.EXIT_FAILED
    assert "1" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["sql", "report", "dict"])
def test_missing_database_exits_2_with_a_clear_message(tmp_path, capsys, command):
    argv = [command, "--db", str(tmp_path / "none.duckdb")]
    if command == "sql":
        argv.insert(1, "SELECT 1")
    if command != "sql":
        argv += ["--out", str(tmp_path / "out")]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "make run" in capsys.readouterr().err


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blinaetl.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("value", ["0", "-3", "9", "many"])
def test_synth_refuses_a_patient_count_below_one_with_exit_2(tmp_path, value):
    out = _cli("synth", "--patients", value, "--out", str(tmp_path / "c"))
    assert out.returncode == 2
    assert "--patients" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "c").exists()


def test_synth_with_the_smallest_allowed_cohort_works(tmp_path):
    assert cli.MIN_SYNTH_PATIENTS == 10
    assert cli.main(["synth", "--patients", "10", "--out", str(tmp_path / "c")]) == cli.EXIT_OK
    assert (tmp_path / "c" / "landing").is_dir()


def test_version():
    import blinaetl

    out = _cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"blinaetl {blinaetl.__version__}"


def test_missing_key_is_a_configuration_problem_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BLINAETL_SECRET_KEY", raising=False)
    (tmp_path / "landing").mkdir()
    argv = ["run", "--engine", "core", "--landing", str(tmp_path / "landing")]
    argv += ["--warehouse", str(tmp_path / "wh"), "--reports", str(tmp_path / "rp")]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "BLINAETL_SECRET_KEY" in capsys.readouterr().err
    assert not (tmp_path / "wh" / "restricted").exists()


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("k" * 31, False),
        ("k" * 32, True),
        ("k" * 33, True),
        ("é" * 16, True),
        ("é" * 15 + "k", False),
    ],
)
def test_key_length_check_and_message_agree_on_32_bytes(monkeypatch, key, accepted):
    monkeypatch.setenv("BLINAETL_SECRET_KEY", key)
    if accepted:
        assert resolve_secret(demo=False) == key.encode()
    else:
        with pytest.raises(MissingSecretError, match="shorter than 32 bytes"):
            resolve_secret(demo=False)


def test_unknown_definition_is_exit_2(tmp_path, capsys):
    defs = tmp_path / "defs.yaml"
    defs.write_text("no_such_definition: 1\n")
    (tmp_path / "landing").mkdir()
    argv = ["run", "--engine", "core", "--demo", "--landing", str(tmp_path / "landing")]
    argv += ["--warehouse", str(tmp_path / "wh"), "--reports", str(tmp_path / "rp")]
    assert cli.main([*argv, "--definitions", str(defs)]) == cli.EXIT_USAGE
    assert "no_such_definition" in capsys.readouterr().err


# --- encodings: byte-order marks, the declared encoding, NUL bytes --------------------------

WIDE_MAPPING = (
    MAPPING
    + """
  - table: patients
    glob: "clinical/T1/wide_*.csv"
    format: csv
    encoding: utf-16-le
    date_format: "%Y-%m-%d"
    columns: {mrn: MRN, patient_name: patient_name, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}
"""
)
TWO = PATIENTS + "P002,Zoë Ünal,1971-02-02,M,2015-01-01,positive,1,yes\n"


def _ingest_one(tmp_path: Path, rel: str, data: bytes):
    landing, sources = _setup(tmp_path)
    (sources / "t.yaml").write_text(WIDE_MAPPING)
    (landing / rel).write_bytes(data)
    result = ingest_landing(landing, "r", DEMO_KEY, sources_dir=sources)
    return _files(result)[rel], result


@pytest.mark.parametrize(
    ("bom", "codec", "name"),
    [
        (b"\xef\xbb\xbf", "utf-8", None),
        (b"\xff\xfe", "utf-16-le", "UTF-16 LE"),
        (b"\xfe\xff", "utf-16-be", "UTF-16 BE"),
        (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32 LE"),
        (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32 BE"),
    ],
)
def test_byte_order_mark_decides_the_encoding_and_is_named(tmp_path, bom, codec, name):
    rel = "clinical/T1/patients_20260101.csv"
    row, result = _ingest_one(tmp_path, rel, bom + TWO.encode(codec))
    assert row["rows_loaded"] == 2, row
    assert sorted(result.tables["patients"]["patient_name"].to_list()) == ["Jane", "Zoë Ünal"]
    if name is None:
        assert row["status"] == "loaded"
    else:
        assert row["status"] == "loaded_with_warnings"
        assert f"{name} byte-order mark" in row["error"] and "utf-8" in row["error"]


def test_declared_encoding_is_honoured_without_a_mark(tmp_path):
    rel = "clinical/T1/wide_20260101.csv"
    row, result = _ingest_one(tmp_path, rel, TWO.encode("utf-16-le"))
    assert (row["status"], row["rows_loaded"]) == ("loaded", 2)
    assert "Zoë Ünal" in result.tables["patients"]["patient_name"].to_list()


def test_utf16_without_a_mark_is_named_with_the_fix(tmp_path):
    row, _ = _ingest_one(tmp_path, "clinical/T1/patients_20260101.csv", TWO.encode("utf-16-le"))
    assert row["status"] == "rejected"
    assert "UTF-16 LE text without a byte-order mark" in row["error"]
    assert "encoding: utf-16-le" in row["error"] and "encoding" in row["fix"]


def test_wrong_8bit_encoding_names_what_the_bytes_look_like(tmp_path):
    row, _ = _ingest_one(tmp_path, "clinical/T1/patients_20260101.csv", TWO.encode("latin-1"))
    assert row["status"] == "rejected"
    assert "line 3" in row["error"] and "not valid utf-8" in row["error"]
    assert "latin-1" in row["error"]


def test_a_nul_byte_quarantines_its_line_only(tmp_path):
    data = (TWO + "P003,Al\x00Poe,1972-03-03,F,2016-01-01,negative,0,no\n").encode()
    row, result = _ingest_one(tmp_path, "clinical/T1/patients_20260101.csv", data)
    assert (row["status"], row["rows_read"], row["rows_loaded"], row["rows_quarantined"]) == (
        "partially_quarantined",
        3,
        2,
        1,
    )
    fails = result.quarantine_failures
    assert fails.select("_source_row", "check_id").rows() == [(4, "PAT_ROW_TEXT")]
    assert "NUL byte" in fails["message"][0]
    assert result.tables["patients"]["mrn"].to_list() == ["P001", "P002"]


# --- plausibility.temporal: nothing after the extract's date; undated extracts ---------------


@pytest.mark.parametrize(
    ("diagnosis", "quarantined"),
    [("2025-12-31", False), ("2026-01-01", False), ("2026-01-02", True), ("2099-01-01", True)],
)
def test_no_date_after_the_extract_date(tmp_path, diagnosis, quarantined):
    data = PATIENTS.replace("2014-01-01", diagnosis).encode()
    row, result = _ingest_one(tmp_path, "clinical/T1/patients_20260101.csv", data)
    fails = result.quarantine_failures.filter(pl.col("check_id") == "PAT_DIAGNOSIS_DATE_NOT_FUTURE")
    assert (fails.height == 1) is quarantined
    assert row["rows_quarantined"] == int(quarantined)
    if quarantined:
        assert fails["kahn"][0] == "plausibility.temporal"
        assert "later than the extract's date" in fails["message"][0]
        dq = result.dq_results.filter(pl.col("check_id") == "PAT_DIAGNOSIS_DATE_NOT_FUTURE")
        assert dq["status"][0] == "failed"


def test_a_sole_undated_extract_is_checked_against_the_run_date(tmp_path):
    import datetime as dt

    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    data = (PATIENTS + f"P002,Al,1971-01-01,M,{tomorrow},negative,0,no\n").encode()
    row, result = _ingest_one(tmp_path, "clinical/T1/patients_current.csv", data)
    assert (row["rows_loaded"], row["rows_quarantined"]) == (1, 1)
    fails = result.quarantine_failures
    assert fails.filter(pl.col("check_id") == "PAT_DIAGNOSIS_DATE_NOT_FUTURE")[
        "_source_row"
    ].to_list() == [3]


def test_an_undated_extract_beside_dated_ones_is_a_file_level_error(tmp_path):
    landing, sources = _setup(tmp_path)
    (landing / "clinical/T1/patients_20260101.csv").write_text(PATIENTS)
    (landing / "clinical/T1/patients_final.csv").write_text(PATIENTS.replace("P001", "P009"))
    files = _files(ingest_landing(landing, "r", DEMO_KEY, sources_dir=sources))
    undated = files["clinical/T1/patients_final.csv"]
    assert undated["status"] == "rejected", "never silently superseded"
    assert "no extract date in its name" in undated["error"]
    assert "clinical/T1/patients_20260101.csv" in undated["error"]
    assert "YYYYMMDD" in undated["fix"]
    assert "replaced by the newer extract" not in undated["error"]
    assert files["clinical/T1/patients_20260101.csv"]["status"] == "loaded"


# --- limits against resource exhaustion (blinaetl/ingest/limits.py) -------------------------

XLSX_MAPPING = (
    MAPPING
    + """
  - table: patients
    glob: "clinical/T1/book_*.xlsx"
    format: xlsx
    date_format: "%Y-%m-%d"
    columns: {mrn: MRN, patient_name: patient_name, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date, ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}
"""
)


def _ingest_file(tmp_path: Path, rel: str, data: bytes, mapping: str = XLSX_MAPPING) -> dict:
    landing, sources = _setup(tmp_path)
    (sources / "t.yaml").write_text(mapping)
    (landing / rel).write_bytes(data)
    return _files(ingest_landing(landing, "r", DEMO_KEY, sources_dir=sources))[rel]


def _workbook(tmp_path: Path, csv_text: str) -> bytes:
    path = tmp_path / "book.xlsx"
    pl.read_csv(csv_text.encode(), infer_schema=False).write_excel(path)
    return path.read_bytes()


@pytest.mark.parametrize(("limit", "rejected"), [("3", False), ("2", True)])
def test_row_limit_of_a_csv(tmp_path, monkeypatch, limit, rejected):
    monkeypatch.setenv("BLINAETL_MAX_ROWS", limit)
    three = TWO + "P003,Al,1972-03-03,F,2016-01-01,negative,0,no\n"
    row = _ingest_file(tmp_path, "clinical/T1/patients_20260101.csv", three.encode())
    assert (row["status"] == "rejected") is rejected
    if rejected:
        assert "has 3 data rows, more than the limit of 2 data rows (max_rows)" in row["error"]
        assert "BLINAETL_MAX_ROWS" in row["fix"]


@pytest.mark.parametrize(("limit", "rejected"), [("8", False), ("7", True)])
def test_column_limit(tmp_path, monkeypatch, limit, rejected):
    monkeypatch.setenv("BLINAETL_MAX_COLUMNS", limit)
    row = _ingest_file(tmp_path, "clinical/T1/patients_20260101.csv", PATIENTS.encode())
    assert (row["status"] == "rejected") is rejected
    if rejected:
        assert "has 8 columns, more than the limit of 7 (max_columns)" in row["error"]


def test_file_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("BLINAETL_MAX_FILE_BYTES", "50")
    row = _ingest_file(tmp_path, "clinical/T1/patients_20260101.csv", PATIENTS.encode())
    assert row["status"] == "rejected"
    assert f"is {len(PATIENTS.encode())} bytes, more than the limit of 50 bytes" in row["error"]


def test_workbook_row_limit(tmp_path, monkeypatch):
    data = _workbook(tmp_path, TWO)
    monkeypatch.setenv("BLINAETL_MAX_ROWS", "2")
    assert _ingest_file(tmp_path, "clinical/T1/book_20260101.xlsx", data)["status"] == "loaded"
    monkeypatch.setenv("BLINAETL_MAX_ROWS", "1")
    row = _ingest_file(tmp_path / "again", "clinical/T1/book_20260101.xlsx", data)
    assert row["status"] == "rejected"
    assert "has more than the limit of 1 data rows (max_rows)" in row["error"]


def test_zip_bomb_workbook_is_refused_before_it_is_decompressed(tmp_path):
    _workbook(tmp_path, TWO)  # a real workbook, then 30 MB of padding packed beside its parts
    bomb = tmp_path / "bomb.xlsx"
    with (
        zipfile.ZipFile(tmp_path / "book.xlsx") as src,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for item in src.infolist():
            out.writestr(item, src.read(item))
        out.writestr("xl/media/padding.xml", b" " * 30_000_000)  # 30 MB that packs to ~30 KB
    assert len(bomb.read_bytes()) < 200_000
    row = _ingest_file(tmp_path, "clinical/T1/book_20260101.xlsx", bomb.read_bytes())
    assert row["status"] == "rejected"
    assert "decompresses" in row["error"] and "max_xlsx_compression_ratio" in row["error"]


def test_decompressed_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("BLINAETL_MAX_XLSX_UNCOMPRESSED_BYTES", "1000")
    row = _ingest_file(tmp_path, "clinical/T1/book_20260101.xlsx", _workbook(tmp_path, TWO))
    assert row["status"] == "rejected"
    assert "more than the limit of 1,000 bytes (max_xlsx_uncompressed_bytes)" in row["error"]
