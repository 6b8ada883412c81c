"""Incremental runs: unchanged files come from the per-file cache, results equal a full run.

Each case changes the landing folder of a warehouse that has run before, runs it again
(incremental: the unchanged files are taken from `warehouse/restricted/file_cache/`) and
compares every table of the restricted database and every table and view of the published
analytics database, and the per-file accounting, with a run from scratch in a fresh warehouse
on the same folder. Expected reuse is worked out from which files the case touched.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import stat
from pathlib import Path

import duckdb
import polars as pl
import pytest

from blinaetl import pipeline
from blinaetl.ingest.landing import ingest_landing
from blinaetl.pipeline import RunConfig, run_pipeline, stage_load
from blinaetl.synth import generate

ALL_FILES = {
    "clinical/SITE01/assessments_20260901.csv",
    "clinical/SITE01/outcomes_20260901.csv",
    "clinical/SITE01/patients_20260901.csv",
    "clinical/SITE01/treatments_20260901.csv",
    "clinical/SITE02/assessments_20260901.csv",
    "clinical/SITE02/outcomes_20260901.csv",
    "clinical/SITE02/patients_20260901.xlsx",
    "clinical/SITE02/treatments_20260901.xlsx",
    "flow/LABNUM/flow_20260901.parquet",
    "flow/LABTXT/flow_20260901.tsv",
    "imaging/SITE01/reports_20260901.csv",
    "imaging/SITE02/reports_20260901.csv",
}
SECRET = b"incremental-test-key-0123456789abcdef"


def _normalized(value: object, run_id: str) -> object:
    """A value with the run's id replaced (lineage and metadata carry the run id)."""
    if isinstance(value, str):
        return value.replace(run_id, "<run>")
    return value


def database_content(path: Path, run_id: str) -> dict[str, list[tuple]]:
    """Every table and view of a database: its columns and its rows in a defined order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = "
            "current_database() UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal"
        ).fetchall()
        out = {}
        for schema, table in sorted(names):
            cur = con.execute(f'SELECT * FROM "{schema}"."{table}"')
            columns = tuple(d[0] for d in cur.description)
            rows = [tuple(_normalized(v, run_id) for v in row) for row in cur.fetchall()]
            out[f"{schema}.{table}"] = [columns, *sorted(rows, key=repr)]
        return out
    finally:
        con.close()


def _config(landing: Path, root: Path, **kwargs: object) -> RunConfig:
    return RunConfig(
        landing=landing,
        warehouse=root / "warehouse",
        reports=root / "reports",
        demo=True,
        gx=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _run(cfg: RunConfig) -> tuple[object, object]:
    # the report stage reads the published database only; skipped to keep the test short,
    # and so are the report's child processes, which would start with the run for it.
    # The run releases each validated table once the load has staged it: they are kept here,
    # as that stage gets them, for the comparisons (`result.validated`)
    validated: dict[str, pl.DataFrame] = {}

    def load(c: RunConfig, r: object) -> dict[str, int]:
        validated.update(r.tables)  # type: ignore[attr-defined]
        return stage_load(c, r)

    summary, result = run_pipeline(
        cfg,
        stages={"report": _no_report, "load": load},
        report_children=False,
    )
    result.validated = validated  # type: ignore[attr-defined]
    return summary, result


def _no_report(cfg: RunConfig, *_: object) -> Path:
    assert cfg.run_id not in pipeline._REPORT_CHILDREN, "report_children=False started none"
    return cfg.report_dir


def _full_run_view(cfg: RunConfig, result: object) -> tuple[object, dict[str, dict]]:
    """A full run's ingest result and the content of its two databases (run id normalized),
    read now: a later run in the same warehouse replaces the files."""
    return result, {db: database_content(getattr(cfg, db), cfg.run_id) for db in _DATABASES}


_DATABASES = ("restricted_path", "analytics_path")


def _compare_with_fresh_full_run(
    landing: Path, incremental: RunConfig, result: object, tmp: Path, **kwargs: object
) -> None:
    fresh = _config(landing, tmp, **kwargs)
    _, full_result = _run(fresh)
    _assert_same_as_full_run(incremental, result, _full_run_view(fresh, full_result))
    shutil.rmtree(tmp)


def _assert_same_as_full_run(
    incremental: RunConfig, result: object, full: tuple[object, dict[str, dict]]
) -> None:
    full_result, contents = full
    for name in ("files", "dq_results", "quarantine_rows", "quarantine_failures"):
        got, want = getattr(result, name), getattr(full_result, name)
        assert got.equals(want), name
    assert set(full_result.validated) == set(result.validated)  # type: ignore[attr-defined]
    for table, frame in full_result.validated.items():  # type: ignore[attr-defined]
        got = result.validated[table].with_columns(pl.lit("<run>").alias("_run_id"))  # type: ignore[attr-defined]
        assert got.equals(frame.with_columns(pl.lit("<run>").alias("_run_id"))), table
    for db in _DATABASES:
        got = database_content(getattr(incremental, db), incremental.run_id)
        want = contents[db]
        assert sorted(got) == sorted(want), db
        for table in want:
            assert got[table] == want[table], f"{db}: {table}"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    generate(root / "cohort", n_patients=120, seed=5)
    return root / "cohort" / "landing"


def _data_lines(path: Path) -> list[str]:
    """The file's lines, read byte for byte (latin-1 maps every byte; written back the same)."""
    return path.read_text(encoding="latin-1").splitlines(keepends=True)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="latin-1")


def test_incremental_runs_equal_full_runs_case_by_case(cohort, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    root = tmp_path / "live"
    first = _config(landing, root)
    _, result = _run(first)
    assert result.reused == []  # a first run has nothing cached

    # 1. one row appended to one file (a copy of its last row: quarantined as a duplicate)
    outcomes = landing / "clinical/SITE01/outcomes_20260901.csv"
    lines = _data_lines(outcomes)
    _write_lines(outcomes, [*lines, lines[-1]])
    cfg = _config(landing, root)
    _, result = _run(cfg)
    assert set(result.reused) == ALL_FILES - {"clinical/SITE01/outcomes_20260901.csv"}
    row = result.files.filter(pl.col("path") == "clinical/SITE01/outcomes_20260901.csv").row(
        0, named=True
    )
    assert row["rows_read"] == len(lines)  # header + rows before, one row more now
    assert row["rows_quarantined"] >= 1
    # the copy is quarantined, so no staged row changed: the last build is reused
    assert result.build_reused
    # and no patient fact changed: the tables checked against them are not validated again
    assert set(result.validated_reused) == {
        "assessments",
        "flow_results",
        "imaging_reports",
        "reported_responses",
    }
    log = (cfg.report_dir / "run.log").read_text(encoding="utf-8")
    assert (
        "incremental run: 4 table(s) not validated again, their files, checks, confirmed "
        "failures and patient facts unchanged: assessments, flow_results, imaging_reports, "
        "reported_responses"
    ) in log
    _compare_with_fresh_full_run(landing, cfg, result, tmp_path / "fresh1")

    # 2. a row modified so that it fails a check (a date that does not parse)
    assessments = landing / "clinical/SITE02/assessments_20260901.csv"
    lines = _data_lines(assessments)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[1].rstrip("\n").split(",")
    cells[header.index("Date")] = "not a date"
    _write_lines(assessments, [lines[0], ",".join(cells) + "\n", *lines[2:]])
    cfg = _config(landing, root)
    _, result = _run(cfg)
    assert set(result.reused) == ALL_FILES - {"clinical/SITE02/assessments_20260901.csv"}
    failed = result.quarantine_failures.filter(
        (pl.col("_source_file") == "clinical/SITE02/assessments_20260901.csv")
        & (pl.col("_source_row") == 2)
    )
    assert failed.height >= 1  # the broken date is quarantined (the row number a person sees)
    assert not result.build_reused  # a staged row left: the models run again
    _compare_with_fresh_full_run(landing, cfg, result, tmp_path / "fresh2")

    # 3. a file removed (the gate's finding for the lost source is accepted in both runs)
    (landing / "flow/LABTXT/flow_20260901.tsv").unlink()
    cfg = _config(landing, root, accept_drop=("source:labtxt_flow",))
    _, result = _run(cfg)
    remaining = ALL_FILES - {"flow/LABTXT/flow_20260901.tsv"}
    assert set(result.reused) == remaining
    assert set(result.files["path"]) == remaining
    cached = {p.name for p in (root / "warehouse/restricted/file_cache").iterdir()}
    assert len(cached) == len(remaining)  # the removed file's entry is dropped
    _compare_with_fresh_full_run(
        landing, cfg, result, tmp_path / "fresh3", accept_drop=("source:labtxt_flow",)
    )


def test_patient_removed_from_clinical_file_quarantines_cached_rows(cohort, tmp_path):
    """Cross-record: only the patients file changes; the other files of the patient's site
    come from the cache, and their rows of the removed patient are quarantined all the same
    (known_patient), as in a full run."""
    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    root = tmp_path / "live"
    _run(_config(landing, root))
    patients = landing / "clinical/SITE01/patients_20260901.csv"
    lines = _data_lines(patients)
    treatments = pl.read_csv(
        landing / "clinical/SITE01/treatments_20260901.csv", infer_schema=False
    )
    # a patient of SITE01 with treatment rows, removed from the patients file only
    mrn = next(
        line.split(",")[0] for line in lines[1:] if line.split(",")[0] in set(treatments["MRN"])
    )
    expected_rows = treatments.filter(pl.col("MRN") == mrn).height
    _write_lines(patients, [line for line in lines if line.split(",")[0] != mrn])
    cfg = _config(landing, root)
    _, result = _run(cfg)
    assert "clinical/SITE01/treatments_20260901.csv" in result.reused
    assert "clinical/SITE01/patients_20260901.csv" not in result.reused
    unknown = result.quarantine_failures.filter(
        (pl.col("_source_file") == "clinical/SITE01/treatments_20260901.csv")
        & (pl.col("check_id") == "TRT_KNOWN_PATIENT")
    )
    assert unknown.height == expected_rows
    # the run log and the manifest name the files taken from the cache (names and counts only)
    reused = sorted(ALL_FILES - {"clinical/SITE01/patients_20260901.csv"})
    log = (cfg.report_dir / "run.log").read_text(encoding="utf-8")
    assert (
        f"incremental run: 11 file(s) unchanged, taken from the per-file cache: {', '.join(reused)}"
        in log
    )
    assert mrn not in log
    from blinaetl.reports.steward import build_manifest

    manifest = build_manifest(cfg, result, {})
    assert manifest["incremental"] == {
        "full_run": False,
        "files_reused": 11,
        "reused_from_cache": reused,
        # the patient facts changed, so every table checked against them was validated again
        "tables_not_validated_again": [],
    }
    _compare_with_fresh_full_run(landing, cfg, result, tmp_path / "fresh")


def _ingest(landing: Path, cache: Path, **kwargs: object) -> object:
    return ingest_landing(landing, run_id="r", secret=SECRET, cache_dir=cache, **kwargs)  # type: ignore[arg-type]


def _same_ingest(a: object, b: object) -> None:
    for name in ("files", "dq_results", "quarantine_rows", "quarantine_failures"):
        assert getattr(a, name).equals(getattr(b, name)), name
    for table, frame in b.tables.items():  # type: ignore[attr-defined]
        assert a.tables[table].equals(frame), table  # type: ignore[attr-defined]


def test_cache_key_changes_mean_every_file_is_read_again(cohort, tmp_path, caplog):
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    assert first.reused == []
    again = _ingest(cohort, cache)
    assert set(again.reused) == ALL_FILES
    _same_ingest(again, first)
    # another key, another partial-date rule, or --full: nothing is taken from the cache
    with caplog.at_level(logging.INFO, logger="blinaetl"):
        other_key = ingest_landing(cohort, run_id="r", secret=SECRET + b"x", cache_dir=cache)
    assert other_key.reused == []
    assert (
        "file cache: 12 entries dropped (of files removed or changed, or of another code, "
        "contract, mapping, definition or key version)"
    ) in [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # a miss, not damage
    rule = _ingest(cohort, cache, definitions={"partial_date_imputation": "middle"})
    assert rule.reused == []
    full = _ingest(cohort, cache, full=True)
    assert full.reused == []
    _same_ingest(full, first)
    assert set(_ingest(cohort, cache).reused) == ALL_FILES  # --full wrote the entries afresh


def test_an_entry_writes_the_delivered_text_once_and_reads_back_the_same_frame(cohort, tmp_path):
    """A mapped column equal row for row to its delivered column (a field's `__raw__` text,
    a text field's typed value) is written once, in `raw.arrow`, and set beside the frame when
    the entry is read; a typed number (another dtype) stays in `frame.arrow`. The run from the
    cache gives the same frames as the run that wrote it."""
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    metas = {
        json.loads((e / "meta.json").read_text(encoding="utf-8"))["path"]: e
        for e in cache.iterdir()
    }
    entry = metas["clinical/SITE01/assessments_20260901.csv"]
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    written = pl.read_ipc(entry / "frame.arrow").columns
    shared = meta["shared"]
    assert {"__raw__mrn": "MRN", "mrn": "MRN", "__raw__anc_10e9l": "anc_10e9l"}.items() <= (
        shared.items()
    )
    assert "anc_10e9l" not in shared and "anc_10e9l" in written  # Float64, not the text
    assert not set(shared) & set(written)
    assert set(written) | set(shared) == set(meta["columns"])
    again = _ingest(cohort, cache)
    assert set(again.reused) == ALL_FILES
    _same_ingest(again, first)


def test_only_columns_equal_row_for_row_are_written_once(tmp_path):
    """`_shared_columns`: a column differing in one value is kept, and nothing is shared when
    the delivered text holds its rows in another order (a reshaped file); the entry reads back
    as written, column order included."""
    from blinaetl.ingest.cache import Entry, FileCache, _shared_columns

    frame = pl.DataFrame(
        {"__raw__a": ["x", "y"], "_source_row": [2, 3], "__raw__b": ["x", "z"], "n": [1, 2]}
    )
    raw = pl.DataFrame({"A": ["x", "y"], "B": ["x", "y"], "_source_row": [2, 3]})
    text_of = {"__raw__a": "A", "__raw__b": "B", "n": "A"}
    entry = Entry("f.csv", "0" * 64, frame, raw, "", {}, None, text_of)
    assert _shared_columns(entry) == {"__raw__a": "A"}
    assert (
        _shared_columns(Entry("f.csv", "0" * 64, frame, raw.reverse(), "", {}, None, text_of)) == {}
    )
    cache = FileCache.open(tmp_path / "restricted" / "file_cache", "ctx")
    cache.save("k", entry)
    assert pl.read_ipc(cache.root / "k" / "frame.arrow").columns == ["_source_row", "__raw__b", "n"]
    back = cache.load("k", "f.csv", "0" * 64)
    assert back is not None and back.frame.equals(frame) and back.frame.columns == frame.columns
    assert back.raw.equals(raw)


def test_a_run_from_the_cache_hashes_only_new_patients(cohort, tmp_path, hashed, caplog):
    """The last run's patient keys are kept in the cache under its run context: the next run
    with the same key hashes only the pairs it has not seen (a new patient), and a sample of
    the file's keys to check them; with another key every pair (another context), with `full`
    every pair; a damaged keys file, one with keys of another key or a pair listed twice, is
    hashed again, said in the log. The keys are those of the standard keyed hash every time."""
    from blinaetl.ingest.cache import KEYS_SAMPLE
    from blinaetl.privacy import patient_keys

    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(landing, cache)
    pairs = len(hashed)
    assert pairs == len(set(hashed)) > 100  # each patient once (120 patients, two sites)
    again = _ingest(landing, cache)
    # nothing new: every key read back, a sample of them hashed again to check the file
    checked = hashed[pairs:]
    assert len(checked) == KEYS_SAMPLE and set(checked) <= set(hashed[:pairs])
    _same_ingest(again, first)
    # a new patient at SITE01: hashed alone
    path = landing / "clinical/SITE01/patients_20260901.csv"
    lines = _data_lines(path)
    mrn = lines[1].split(",")[0]
    _write_lines(path, [*lines, lines[1].replace(mrn, "NEW-0001", 1)])
    before = len(hashed)
    third = _ingest(landing, cache)
    assert hashed[before + KEYS_SAMPLE :] == [b"SITE01\x1fNEW-0001"]
    new_key = patient_keys(pl.Series(["SITE01"]), pl.Series(["NEW-0001"]), SECRET)[0]
    assert new_key in third.tables["patients"]["patient_key"].to_list()
    # another key: another context, so the keys file is not read
    other = b"another-incremental-key-0123456789abcdef"
    before = len(hashed)
    keyed = ingest_landing(landing, run_id="r", secret=other, cache_dir=cache)
    assert len(hashed) - before == pairs + 1
    patients = keyed.tables["patients"]
    assert (
        patients["patient_key"].to_list()
        == patient_keys(patients["site"], patients["mrn"], other).to_list()
    )
    # `full`: every pair hashed again
    before = len(hashed)
    _ingest(landing, cache, full=True)
    assert len(hashed) - before == pairs + 1
    # a damaged keys file: hashed again, and said
    (keys_file,) = (cache.parent / "patient_keys").glob("*.arrow")
    keys_file.write_bytes(b"not arrow")
    before = len(hashed)
    with caplog.at_level(logging.WARNING, logger="blinaetl"):
        damaged = _ingest(landing, cache)
    assert len(hashed) - before == pairs + 1
    _same_ingest(damaged, third)
    assert any(
        r.getMessage() == "file cache: the patient keys could not be used (damaged: OSError); "
        "they are hashed again"
        for r in caplog.records
    )
    # a keys file whose keys are not this key's (or lists a pair twice): hashed again, said
    # (the sample is hashed before the keys are found wrong; a pair twice is found first)
    for edit, why, sampled in [
        (
            lambda f: f.with_columns(pl.lit("0" * 64).alias("patient_key")),
            "its keys are not this key's",
            KEYS_SAMPLE,
        ),
        (lambda f: pl.concat([f, f.head(1)]), "a pair is listed twice", 0),
    ]:
        (keys_file,) = (cache.parent / "patient_keys").glob("*.arrow")
        edit(pl.read_ipc(keys_file)).write_ipc(keys_file)
        before = len(hashed)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="blinaetl"):
            edited = _ingest(landing, cache)
        assert len(hashed) - before == sampled + pairs + 1, why
        _same_ingest(edited, third)
        assert [r.getMessage() for r in caplog.records] == [
            f"file cache: the patient keys could not be used ({why}); they are hashed again"
        ]
    # one keys file (the other contexts' dropped), owner-only as the whole restricted folder
    (kept,) = (cache.parent / "patient_keys").iterdir()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700


def test_a_changed_source_mapping_is_a_cache_miss(cohort, tmp_path):
    from blinaetl.ingest.sources import sources_dir

    mappings = tmp_path / "sources"
    shutil.copytree(sources_dir(), mappings)
    cache = tmp_path / "restricted" / "file_cache"
    _ingest(cohort, cache, sources_dir=mappings)
    assert set(_ingest(cohort, cache, sources_dir=mappings).reused) == ALL_FILES
    labtxt = mappings / "labtxt_flow.yaml"
    labtxt.write_text(labtxt.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert _ingest(cohort, cache, sources_dir=mappings).reused == []


def test_a_damaged_entry_is_read_again_and_the_cache_is_owner_only(cohort, tmp_path, caplog):
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    for mode_of in (cache, cache.parent):
        assert stat.S_IMODE(mode_of.stat().st_mode) == 0o700
    for entry in cache.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o700
        for f in entry.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    damaged = sorted(cache.iterdir())[0]
    name = json.loads((damaged / "meta.json").read_text(encoding="utf-8"))["path"]
    (damaged / "frame.arrow").write_bytes(b"not arrow")
    with caplog.at_level(logging.INFO, logger="blinaetl"):
        again = _ingest(cohort, cache)
    assert set(again.reused) == ALL_FILES - {name}
    _same_ingest(again, first)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"file cache: the entry of {name} could not be used (damaged: OSError); the file "
        "is read in full and its entry written again"
    ]
    assert set(_ingest(cohort, cache).reused) == ALL_FILES  # the entry was written again


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda m: {**m, "format": 0}, "entry format 0, this version writes 2"),
        (lambda m: {**m, "sha256": "0" * 64}, "the entry is of another file or of other bytes"),
        (lambda m: {k: v for k, v in m.items() if k != "labels"}, "damaged: KeyError"),
    ],
    ids=["stale-format", "other-bytes", "meta-incomplete"],
)
def test_a_stale_or_incomplete_entry_is_a_logged_full_read(cohort, tmp_path, caplog, edit, reason):
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    entry = sorted(cache.iterdir())[-1]
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    (entry / "meta.json").write_text(json.dumps(edit(meta)), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="blinaetl"):
        again = _ingest(cohort, cache)
    assert set(again.reused) == ALL_FILES - {meta["path"]}
    _same_ingest(again, first)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"file cache: the entry of {meta['path']} could not be used ({reason}); the file is "
        "read in full and its entry written again"
    ]
    assert set(_ingest(cohort, cache).reused) == ALL_FILES


def test_a_changed_check_definition_is_a_cache_miss_and_changes_the_outcome(cohort, tmp_path):
    """A contract's check edited (the outcomes' uniqueness check made a warning): no entry is
    reused, and the outcome is the edited contract's, equal to a run without any cache."""
    from blinaetl.resources import contracts_dir
    from blinaetl.validate.contracts import load_contracts

    contracts = tmp_path / "contracts"
    shutil.copytree(contracts_dir(), contracts)
    cache = tmp_path / "restricted" / "file_cache"
    before = _ingest(cohort, cache, contracts_dir=contracts)
    assert set(_ingest(cohort, cache, contracts_dir=contracts).reused) == ALL_FILES
    path = contracts / "outcomes.yaml"
    text = path.read_text(encoding="utf-8")
    unique = "id: OUT_UNIQUE, check: unique, columns: [mrn, event, event_date], kahn: "
    edited = text.replace(
        unique + "plausibility.uniqueness, severity: error",
        unique + "plausibility.uniqueness, severity: warning",
    )
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    load_contracts.cache_clear()  # contracts are read once per process (a run is a process)
    after = _ingest(cohort, cache, contracts_dir=contracts)
    assert after.reused == []
    fresh = ingest_landing(cohort, run_id="r", secret=SECRET, contracts_dir=contracts)
    _same_ingest(after, fresh)
    assert not before.dq_results.equals(after.dq_results)  # the edit reached the outcome


def _frames() -> object:
    from types import SimpleNamespace

    staged = pl.DataFrame(
        {
            "mrn": ["A1", "A2"],
            "event_date": [None, None],
            "_source_file": ["clinical/S/outcomes_1.csv"] * 2,
            "_file_sha256": ["a" * 64] * 2,
            "_run_id": ["run-1"] * 2,
            "_warnings": [["W"], []],
        },
        schema_overrides={"event_date": pl.Date},
    )
    return SimpleNamespace(
        tables={"outcomes": staged},
        not_collected=pl.DataFrame({"field_name": ["x"]}),
        date_imputations=pl.DataFrame({"source_row": [2]}),
        column_labels=pl.DataFrame({"label": ["Age"]}),
    )


def test_the_build_key_ignores_only_the_run_id_and_the_file_hash(tmp_path):
    from blinaetl.ingest.reuse import build_key, excluded_columns

    assert excluded_columns() == ("_run_id", "_file_sha256")  # no SQL model names either
    cfg = _config(tmp_path / "landing", tmp_path)
    base = _frames()
    key = build_key(cfg, base)
    assert build_key(cfg, _frames()) == key  # the same rows: the same key
    other_run = _frames()
    other_run.tables["outcomes"] = other_run.tables["outcomes"].with_columns(  # type: ignore[attr-defined]
        pl.lit("run-2").alias("_run_id"), pl.lit("b" * 64).alias("_file_sha256")
    )
    assert build_key(cfg, other_run) == key
    changes = {
        "a value": lambda f: f.with_columns(pl.Series("mrn", ["A1", "A3"])),
        "a null": lambda f: f.with_columns(pl.Series("mrn", ["A1", None])),
        "a warning": lambda f: f.with_columns(pl.Series("_warnings", [[], []])),
        "row order": lambda f: f.reverse(),
        "a row less": lambda f: f.head(1),
        "a column type": lambda f: f.with_columns(pl.col("mrn").cast(pl.Categorical)),
    }
    for what, change in changes.items():
        changed = _frames()
        changed.tables["outcomes"] = change(changed.tables["outcomes"])  # type: ignore[attr-defined]
        assert build_key(cfg, changed) != key, what
    labels = _frames()
    labels.column_labels = pl.DataFrame({"label": ["Age (years)"]})  # type: ignore[attr-defined]
    assert build_key(cfg, labels) != key
    # the run context: definitions, date-shift mode, the pseudonymisation key
    assert build_key(_config(tmp_path, tmp_path, date_shift=True), base) != key
    defs = _config(tmp_path, tmp_path, definitions={"partial_date_imputation": "middle"})
    assert build_key(defs, base) != key
    other_secret = _config(tmp_path, tmp_path)
    other_secret.secret = lambda: b"another-key-0123456789abcdef0123456789"  # type: ignore[method-assign]
    assert build_key(other_secret, base) != key


def test_the_build_is_reused_only_when_both_databases_carry_the_key(cohort, tmp_path, caplog):
    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    root = tmp_path / "live"
    first_cfg = _config(landing, root)
    _, first = _run(first_cfg)
    assert not first.build_reused  # nothing to reuse on a first run
    # the first run is a full run of this landing folder in a fresh warehouse, what
    # `_compare_with_fresh_full_run` would run again: its content is kept before the next run
    first_view = _full_run_view(first_cfg, first)
    with caplog.at_level(logging.INFO, logger="blinaetl"):
        cfg = _config(landing, root)
        summary, again = _run(cfg)
    assert again.build_reused and again.build_key == first.build_key
    assert "transform" in summary.timings
    assert any(r.getMessage().startswith("build reused:") for r in caplog.records)
    _assert_same_as_full_run(cfg, again, first_view)
    # the key beside the live file is gone (e.g. a run stopped between swap and key): a build
    sidecar = root / "warehouse" / "blina.duckdb.build_key"
    assert sidecar.read_text(encoding="utf-8").strip() == first.build_key
    sidecar.unlink()
    _, third = _run(_config(landing, root))
    assert not third.build_reused and sidecar.is_file()
    # the restricted database's key differs (its build is not the live one's): a build
    con = duckdb.connect(str(root / "warehouse" / "restricted" / "restricted.duckdb"))
    con.execute("UPDATE meta.build_key SET key = 'other'")
    con.close()
    _, fourth = _run(_config(landing, root))
    assert not fourth.build_reused
    # --full never reuses
    _, full = _run(_config(landing, root, full=True))
    assert not full.build_reused
    assert _run(_config(landing, root))[1].build_reused  # and the next run can again


# --- validated groups kept between runs (`FileCache.load_group`) ---------------------------

ALL_TABLES = {
    "patients",
    "outcomes",
    "treatments",
    "assessments",
    "flow_results",
    "imaging_reports",
    "reported_responses",
}


@pytest.fixture
def validated_tables(monkeypatch):
    """The tables the validator is run on in this test (a probe around the real validator)."""
    from blinaetl.validate import executor

    seen: list[str] = []
    real = executor.validate_tables

    def probe(frames, *args, **kwargs):
        seen.extend(frames)
        return real(frames, *args, **kwargs)

    monkeypatch.setattr(executor, "validate_tables", probe)
    return seen


def _fresh_ingest(landing: Path, tmp: Path, **kwargs: object) -> object:
    """The same folder ingested with no cache at all: what every incremental ingest must equal."""
    return ingest_landing(landing, run_id="r", secret=SECRET, **kwargs)  # type: ignore[arg-type]


def test_an_unchanged_group_is_not_validated_again_and_equals_its_validation(
    cohort, tmp_path, validated_tables
):
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    assert set(validated_tables) == ALL_TABLES and first.validated_reused == []
    validated_tables.clear()
    again = ingest_landing(cohort, run_id="r2", secret=SECRET, cache_dir=cache)
    assert validated_tables == []  # no table was validated: every group came from the cache
    assert set(again.validated_reused) == ALL_TABLES
    for name in ("files", "dq_results", "quarantine_rows", "quarantine_failures"):
        assert getattr(again, name).equals(getattr(first, name)), name
    for table, frame in first.tables.items():
        got = again.tables[table]
        if frame.height:
            assert got["_run_id"].unique().to_list() == ["r2"], table  # this run's lineage
        normal = pl.lit("<run>").alias("_run_id")
        assert got.with_columns(normal).equals(frame.with_columns(normal)), table
    # a folder beside the cache, owner only, one entry per group of tables
    groups = cache.parent / "validated"
    assert stat.S_IMODE(groups.stat().st_mode) == 0o700
    assert len(list(groups.iterdir())) == 5  # patients+outcomes+treatments, then one each
    for entry in groups.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o700
        assert {stat.S_IMODE(f.stat().st_mode) for f in entry.iterdir()} == {0o600}


def test_a_changed_file_revalidates_its_group_only_and_drops_the_old_entry(
    cohort, tmp_path, validated_tables
):
    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    cache = tmp_path / "restricted" / "file_cache"
    _ingest(landing, cache)
    before = {p.name for p in (cache.parent / "validated").iterdir()}
    flow = landing / "flow/LABTXT/flow_20260901.tsv"
    lines = _data_lines(flow)
    _write_lines(flow, lines[:-1])  # one row fewer
    validated_tables.clear()
    again = _ingest(landing, cache)
    assert validated_tables == ["flow_results"]
    assert set(again.validated_reused) == ALL_TABLES - {"flow_results"}
    _same_ingest(again, _fresh_ingest(landing, tmp_path))
    after = {p.name for p in (cache.parent / "validated").iterdir()}
    assert len(after) == 5 and len(before - after) == 1  # the flow group's old entry is gone


def test_changed_patient_facts_revalidate_every_table_checked_against_them(
    cohort, tmp_path, validated_tables
):
    """Only the patients file changes (a diagnosis date moved after the patient's
    assessments): the assessments, flow and imaging files are unchanged and come from the
    file cache, but their groups are checked against the facts again, as a full run does."""
    landing = tmp_path / "landing"
    shutil.copytree(cohort, landing)
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(landing, cache)
    patients = landing / "clinical/SITE01/patients_20260901.csv"
    lines = _data_lines(patients)
    assessed = set(
        pl.read_csv(landing / "clinical/SITE01/assessments_20260901.csv", infer_schema=False)["MRN"]
    )
    at = next(i for i, line in enumerate(lines[1:], 1) if line.split(",")[0] in assessed)
    header = lines[0].rstrip("\n").split(",")
    cells = next(csv.reader([lines[at]]))
    cells[header.index("diagnosis_date")] = "2026-08-31"  # after every assessment of the patient
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    _write_lines(patients, [*lines[:at], out.getvalue(), *lines[at + 1 :]])
    validated_tables.clear()
    again = _ingest(landing, cache)
    assert "clinical/SITE01/assessments_20260901.csv" in again.reused  # the file is unchanged
    assert {"assessments", "flow_results", "imaging_reports"} <= set(validated_tables)
    assert set(again.validated_reused) <= {"reported_responses"}  # no file: no patient facts read
    after_dx = pl.col("check_id") == "ASM_AFTER_DX"
    more = again.quarantine_failures.filter(after_dx).height
    assert more > first.quarantine_failures.filter(after_dx).height  # the facts reached them
    _same_ingest(again, _fresh_ingest(landing, tmp_path))


def test_a_failure_confirmed_by_a_site_revalidates_that_table(cohort, tmp_path, validated_tables):
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    one = first.quarantine_failures.filter(pl.col("check_id") == "ASM_PLT_RANGE").head(1)
    accepted = one.select("_source_id", "table_name", "check_id", "row_hash")
    validated_tables.clear()
    again = _ingest(cohort, cache, accepted=accepted)
    assert validated_tables == ["assessments"]
    assert set(again.validated_reused) == ALL_TABLES - {"assessments"}
    fresh = _fresh_ingest(cohort, tmp_path, accepted=accepted)
    _same_ingest(again, fresh)
    # the confirmed row is loaded now (as a warning), so the outcome differs from the first
    assert again.quarantine_rows.height == first.quarantine_rows.height - 1
    # the same confirmation next run: that group is taken from the cache too
    validated_tables.clear()
    assert _ingest(cohort, cache, accepted=accepted).validated_reused and validated_tables == []


def test_the_group_key_ignores_row_order_but_not_a_value(tmp_path):
    from blinaetl.ingest.cache import FileCache

    cache = FileCache.open(tmp_path / "restricted" / "file_cache", "context")
    cache.key("a.csv", "src", 0, "sha-a")
    facts = pl.DataFrame({"site": ["S1", "S1", "S2"], "mrn": ["1", "2", "1"], "_dx": [1, 2, 3]})
    confirmed = pl.DataFrame(
        {"_source_id": ["s", "s"], "table_name": ["t", "u"], "check_id": ["c", "d"]}
    )
    key = cache.group_key(["t"], [("a.csv", "sha-a")], confirmed, facts)
    assert key == cache.group_key(["t"], [("a.csv", "sha-a")], confirmed[::-1], facts[::-1])
    # a confirmation of another table's failure is no input of this group
    assert key == cache.group_key(["t"], [("a.csv", "sha-a")], confirmed.head(1), facts)
    changed = facts.with_columns(pl.Series("_dx", [1, 2, 4]))
    assert key != cache.group_key(["t"], [("a.csv", "sha-a")], confirmed, changed)
    assert key != cache.group_key(["t"], [("a.csv", "sha-a")], confirmed.tail(1), facts)
    assert key != cache.group_key(["t"], [("a.csv", "sha-a")], confirmed, None)
    assert key != cache.group_key(["u"], [("a.csv", "sha-a")], confirmed, facts)
    dated = cache.group_key(["t"], [("a.csv", "sha-a")], confirmed, facts, "2026-12-03")
    assert dated != key
    assert dated != cache.group_key(["t"], [("a.csv", "sha-a")], confirmed, facts, "2026-12-04")
    # a file this run did not key, or whose bytes changed while it was read: no key at all
    assert cache.group_key(["t"], [("b.csv", "sha-b")], confirmed, facts) is None
    assert cache.group_key(["t"], [("a.csv", "other")], confirmed, facts) is None


@pytest.mark.parametrize("damage", ["frame", "meta", "layout"])
def test_a_damaged_group_is_validated_again_with_a_warning(
    cohort, tmp_path, caplog, validated_tables, damage
):
    cache = tmp_path / "restricted" / "file_cache"
    first = _ingest(cohort, cache)
    entry = next(
        e
        for e in (cache.parent / "validated").iterdir()
        if json.loads((e / "meta.json").read_text(encoding="utf-8"))["tables"] == ["assessments"]
    )
    if damage == "frame":
        (entry / "table0.arrow").write_bytes(b"not arrow")
        why = "damaged: OSError"
    elif damage == "meta":
        (entry / "meta.json").write_text("{", encoding="utf-8")
        why = "damaged: JSONDecodeError"
    else:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        (entry / "meta.json").write_text(json.dumps({**meta, "format": 0}), encoding="utf-8")
        why = "the entry is of another layout or group"
    validated_tables.clear()
    with caplog.at_level(logging.INFO, logger="blinaetl"):
        again = _ingest(cohort, cache)
    assert validated_tables == ["assessments"]
    _same_ingest(again, first)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"file cache: the validated assessments could not be used ({why}); the group is "
        "validated again"
    ]
    validated_tables.clear()
    _ingest(cohort, cache)
    assert validated_tables == []  # the entry was written again


def test_a_full_run_validates_every_group(cohort, tmp_path, validated_tables):
    cache = tmp_path / "restricted" / "file_cache"
    _ingest(cohort, cache)
    validated_tables.clear()
    full = _ingest(cohort, cache, full=True)
    assert set(validated_tables) == ALL_TABLES and full.validated_reused == []


def test_a_file_named_without_an_extract_date_is_validated_again_on_another_day(
    cohort, tmp_path, validated_tables, monkeypatch
):
    """Its events are checked against the run's date (`not_after_extract`), so its group is
    taken from the cache on the same day and validated again the next day; the dated files'
    groups are taken from the cache on both days."""
    import datetime as dt

    from blinaetl.ingest import landing as ingestion

    root = tmp_path / "landing"
    shutil.copytree(cohort, root)
    (root / "flow/LABTXT/flow_20260901.tsv").rename(root / "flow/LABTXT/flow_latest.tsv")
    cache = tmp_path / "restricted" / "file_cache"

    class Day(dt.date):
        shift = 0

        @classmethod
        def today(cls) -> dt.date:
            return dt.date(2026, 12, 3) + dt.timedelta(days=cls.shift)

    class Clock:  # `landing.dt`, with today's date moved
        date = Day
        datetime = dt.datetime
        timedelta = dt.timedelta

    monkeypatch.setattr(ingestion, "dt", Clock)
    first = _ingest(root, cache)
    assert "flow/LABTXT/flow_latest.tsv" in set(first.files["path"])
    validated_tables.clear()
    assert _ingest(root, cache).validated_reused and validated_tables == []  # the same day
    Day.shift = 1
    validated_tables.clear()
    next_day = _ingest(root, cache)
    assert validated_tables == ["flow_results"]  # the undated file's table alone
    assert "flow_results" not in next_day.validated_reused
    _same_ingest(next_day, first)  # no event of the cohort lies between the two days


def test_the_group_key_names_the_validators_version(tmp_path, monkeypatch):
    from importlib import metadata

    from blinaetl.ingest import cache as cache_module

    store = cache_module.FileCache.open(tmp_path / "restricted" / "file_cache", "context")
    store.key("a.csv", "src", 0, "sha-a")
    key = store.group_key(["t"], [("a.csv", "sha-a")], None, None)
    real = metadata.version
    monkeypatch.setattr(
        cache_module.metadata,
        "version",
        lambda name: "0.0-other" if name == "pandera" else real(name),
    )
    cache_module._validator_versions.cache_clear()
    try:
        assert store.group_key(["t"], [("a.csv", "sha-a")], None, None) != key
    finally:
        monkeypatch.undo()
        cache_module._validator_versions.cache_clear()
    assert store.group_key(["t"], [("a.csv", "sha-a")], None, None) == key


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_group_that_cannot_be_written_is_a_warning_and_the_run_goes_on(
    cohort, tmp_path, caplog, validated_tables
):
    """A logged warning per group, never a traceback from the writer's thread."""
    cache = tmp_path / "restricted" / "file_cache"
    cache.parent.mkdir(parents=True)
    (cache.parent / "validated").write_text("in the way", encoding="utf-8")  # not a folder
    with caplog.at_level(logging.INFO, logger="blinaetl"):
        first = _ingest(cohort, cache)
    warned = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warned) == 5 and all(
        w.startswith("file cache: the validated ")
        and w.endswith(" not kept for the next run (FileExistsError)")
        for w in warned
    )
    assert (
        "file cache: the validated assessments not kept for the next run (FileExistsError)"
        in warned
    )
    _same_ingest(first, _fresh_ingest(cohort, tmp_path))
    validated_tables.clear()
    again = _ingest(cohort, cache)
    assert set(validated_tables) == ALL_TABLES and again.validated_reused == []


def test_files_read_by_the_flows_tasks_use_the_same_validated_groups(cohort, tmp_path):
    """The scale-out flow (`flows/pipeline.py`) reads the files on its task runner, then calls
    `validate_files` with the run's file cache: the second delivery of the same files
    validates no table again, and equals the first."""
    from blinaetl.ingest import landing as ingestion
    from blinaetl.privacy import PatientKeys

    def flow_ingest(run_id: str) -> object:
        plan = ingestion.plan_files(cohort)
        cache = ingestion.open_file_cache(plan, tmp_path / "restricted" / "file_cache", SECRET)
        found = ingestion.cached_outcomes(plan, cache, run_id)
        outcomes = [
            hit if hit is not None else ingestion.read_file(job, plan, run_id)
            for job, hit in zip(plan.jobs, found, strict=True)
        ]
        ingestion.store_outcomes(plan, outcomes, cache, prune=False)
        keys = PatientKeys(SECRET, cache.known_keys(SECRET))
        try:
            result = ingestion.validate_files(plan, outcomes, keys, store=cache, run_id=run_id)
        finally:
            cache.join_writers()
        ingestion.keep_for_next_run(cache, keys)
        return result

    first = flow_ingest("r")
    assert first.validated_reused == []
    again = flow_ingest("r")
    assert set(again.validated_reused) == ALL_TABLES
    _same_ingest(again, first)
    _same_ingest(again, _fresh_ingest(cohort, tmp_path))
    assert len(list((tmp_path / "restricted" / "patient_keys").iterdir())) == 1
