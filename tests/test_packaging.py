"""The package as a wheel, the published database's documentation, the data dictionary."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb

from blinaetl.reports.dictionary import write_data_dictionary

ROOT = Path(__file__).resolve().parents[1]


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv is needed to build the wheel: run `make test`, which installs it into .tools/"
    return found


def test_wheel_carries_schemas_and_sql_and_finds_them(tmp_path):
    subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("blinaetl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "blinaetl/_resources/schemas/contracts/patients.yaml",
        "blinaetl/_resources/schemas/definitions.yaml",
        "blinaetl/_resources/schemas/vocab/cd19_lexicon.csv",
        "blinaetl/_resources/schemas/sources/site01_clinical.yaml",
        "blinaetl/_resources/sql/curated/90_patients.sql",
        "blinaetl/reports/templates/steward_report.html.j2",
        "flows/pipeline.py",
    ):
        assert required in names, required
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = (
        "from blinaetl.resources import resource_root, sql_dir; "
        "from blinaetl.validate.contracts import load_contracts; "
        "print(resource_root()); print(len(load_contracts())); print(len(list(sql_dir().rglob('*.sql'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    root, n_contracts, n_sql = out.stdout.split()
    assert Path(root) == unpacked / "blinaetl" / "_resources"
    assert int(n_contracts) == 7
    assert int(n_sql) == len(list((ROOT / "sql").rglob("*.sql")))


def test_every_published_table_view_and_column_has_a_comment(demo_run):
    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        objects = con.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE schema_name IN ('curated', 'endpoints') "
            "UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() WHERE schema_name IN ('curated', 'endpoints') AND NOT internal"
        ).fetchall()
        columns = con.execute(
            "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() WHERE schema_name IN ('curated', 'endpoints')"
        ).fetchall()
        names = {f"{s}.{t}" for s, t, _ in objects}
    finally:
        con.close()
    assert {
        "curated.patients",
        "curated.cd19_specimens",
        "curated.em_findings",
        "curated.definitions",
    } <= names
    expected_views = {
        "time_to_event",
        "km",
        "response_rates",
        "failure_patterns",
        "hct_landmark",
        "hct_counting_process",
    }
    assert {f"endpoints.{v}" for v in expected_views} <= names
    assert not [o for o in objects if not o[2]], "objects without a COMMENT"
    assert not [c for c in columns if not c[3]], "columns without a COMMENT"


def test_data_dictionary_is_generated_from_comments_and_contracts(tmp_path, demo_run):
    _, cfg, _ = demo_run
    out = write_data_dictionary(cfg.analytics_path, tmp_path / "dict.md")
    text = out.read_text()
    assert "### `curated.patients` (table)" in text
    assert "### `endpoints.km` (view)" in text
    assert "### `endpoints.cd19_discordance_summary` (view)" in text
    assert "| `days_apart` | INTEGER |" in text  # curated.cd19_discordance, from its COMMENTs
    assert "| `os_days` | BIGINT |" in text
    assert "### `flow_results` (flow)" in text, "the canonical extract formats are documented too"
    assert "`ASM_BLASTS_RANGE`" in text
