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


def assert_conserved(result) -> None:
    for f in result.files.iter_rows(named=True):
        assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"], f
        loaded = sum(
            t.filter(pl.col("_source_file") == f["path"]).height for t in result.tables.values()
        )
        quarantined = result.quarantine_rows.filter(pl.col("_source_file") == f["path"]).height
        assert (loaded, quarantined) == (f["rows_loaded"], f["rows_quarantined"]), f


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
    assert file_row(run(landing, sources), rel_all)["status"] == "quarantined"
    one_bad = PATIENTS_CSV.replace(",F,", ",Q,")
    landing, sources = setup(tmp_path / "b", text, {rel_part: one_bad})
    assert file_row(run(landing, sources), rel_part)["status"] == "partially_quarantined"


def test_bundled_mappings_still_load():
    assert {s.source for s in load_sources()} >= {"site01_clinical", "labnum_flow"}


def test_mapping_file_that_does_not_exist_names_it(tmp_path):
    with pytest.raises(MappingError, match=r"nope.yaml.*does not exist"):
        load_source(tmp_path / "nope.yaml")


_ = dt
